// Batch parallelism for the CPU kernels: a fixed number of worker threads per call, each taking
// a contiguous range of items. Exceptions raised in a worker are rethrown in the caller.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace pyfill {

int num_threads();
void set_num_threads(int n);

// Calls fn(begin, end) over [0, n) split into at most num_threads() contiguous ranges.
template <class Fn>
void parallel_for(int64_t n, Fn&& fn, int64_t min_per_thread = 1) {
  if (n <= 0) return;
  const int64_t want = std::max<int64_t>(1, n / std::max<int64_t>(1, min_per_thread));
  const int64_t workers = std::min<int64_t>(num_threads(), want);
  if (workers <= 1) {
    fn(int64_t{0}, n);
    return;
  }
  std::exception_ptr error;
  std::mutex error_mutex;
  auto run = [&](int64_t begin, int64_t end) {
    try {
      fn(begin, end);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(workers - 1));
  const int64_t chunk = (n + workers - 1) / workers;
  for (int64_t w = 1; w < workers; ++w) {
    const int64_t begin = w * chunk;
    const int64_t end = std::min(n, begin + chunk);
    if (begin < end) threads.emplace_back(run, begin, end);
  }
  run(0, std::min(n, chunk));
  for (auto& t : threads) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace pyfill
