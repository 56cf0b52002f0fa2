"""Short NumPy reference implementations of the compiled ops, written from the spec; the tests
use them as the oracle for both the C++ and the CUDA kernels. Slow by design: clarity first."""
