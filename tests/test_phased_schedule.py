"""The colouriser's phased schedule as a state machine (SPEC S1): each phase ends on its loss
threshold (reached or equalled) or its step cap, a round ends the loop when G's and D's last
losses together reach the total threshold, else at max_rounds. The phase steps are replaced by
stand-ins that report chosen losses, so every boundary is hit exactly; the generator step's own
report is checked against the target discriminator run directly."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skimage")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from training import colorize as C  # noqa: E402
from training import harness as H  # noqa: E402

TINY = {"base": 4, "depth": 2, "disc_base": 4, "disc_layers": 2}


def schedule(tmp_path: Path, g_losses=(), d_losses=(), **phased) -> C.PhasedSchedule:
    cfg = H.load_config(C.DEFAULTS, None, ["device=cpu", "amp=false", "sample_every=0"])
    cfg["model"] = dict(TINY)
    cfg["out"] = str(tmp_path / "run")
    cfg["phased"].update(phased)
    torch.manual_seed(0)
    from pyfill.models import build_model

    s = C.make_schedule(build_model("colorize", cfg["model"]), cfg, H.DistContext())
    assert isinstance(s, C.PhasedSchedule)
    g, d = iter(g_losses), iter(d_losses)
    s.generator_step = lambda l_norm, ab: {"loss_g": next(g)}  # type: ignore[method-assign]
    s.discriminator_step = lambda l_norm, ab: {"loss_d": next(d)}  # type: ignore[method-assign]
    return s


def rgb() -> torch.Tensor:
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


NEVER = -math.inf  # a loss threshold no loss reaches


def test_a_phase_ends_when_its_loss_equals_the_threshold(tmp_path: Path) -> None:
    s = schedule(tmp_path, g_losses=[0.5], d_losses=[0.25, 0.0], g_loss_threshold=0.5, d_loss_threshold=0.25,
                 total_threshold=NEVER, g_max_steps=9, d_max_steps=9, max_rounds=5)
    logs = s.step(rgb())
    assert logs == {"round": 0.0, "loss_g": 0.5}
    assert (s.ended, s.phase, s.phase_step) == ({"generator": "threshold"}, "discriminator", 0)
    s.step(rgb())
    assert s.ended == {"generator": "threshold", "discriminator": "threshold"}
    assert (s.round, s.phase, s.phase_step, s.done) == (1, "generator", 0, False)


def test_a_phase_ends_at_its_step_cap_when_the_loss_stays_above(tmp_path: Path) -> None:
    s = schedule(tmp_path, g_losses=[3.0, 2.0], d_losses=[5.0, 4.0, 3.0], g_loss_threshold=NEVER,
                 d_loss_threshold=NEVER, g_max_steps=2, d_max_steps=3, total_threshold=NEVER, max_rounds=5)
    s.step(rgb())
    assert (s.phase, s.phase_step, s.ended) == ("generator", 1, {})
    s.step(rgb())
    assert (s.phase, s.phase_step, s.ended) == ("discriminator", 0, {"generator": "cap"})
    s.step(rgb())
    s.step(rgb())
    assert (s.phase, s.phase_step, s.last_d) == ("discriminator", 2, 4.0)
    s.step(rgb())
    assert s.ended == {"generator": "cap", "discriminator": "cap"} and (s.round, s.phase) == (1, "generator")
    assert (s.last_g, s.last_d) == (2.0, 3.0)


def test_the_loop_converges_on_the_sum_of_the_last_losses(tmp_path: Path) -> None:
    # 0.5 + 0.25 = 0.75 equals the total threshold: converged
    s = schedule(tmp_path, g_losses=[0.5], d_losses=[0.25], g_loss_threshold=1.0, d_loss_threshold=1.0,
                 total_threshold=0.75, max_rounds=5)
    s.step(rgb())
    s.step(rgb())
    assert (s.done, s.ended["loop"], s.round) == (True, "converged", 1)
    with pytest.raises(RuntimeError, match=r"^the phased schedule has ended; no more steps$"):
        s.step(rgb())
    # the sum, not the difference: 0.75 is above a threshold of 0.5 although 0.5 - 0.25 is not
    s = schedule(tmp_path, g_losses=[0.5], d_losses=[0.25], g_loss_threshold=1.0, d_loss_threshold=1.0,
                 total_threshold=0.5, max_rounds=5)
    s.step(rgb())
    s.step(rgb())
    assert (s.done, s.round, s.phase) == (False, 1, "generator") and "loop" not in s.ended


def test_the_loop_ends_at_max_rounds(tmp_path: Path) -> None:
    s = schedule(tmp_path, g_losses=[1.0] * 2, d_losses=[1.0] * 2, g_loss_threshold=2.0, d_loss_threshold=2.0,
                 total_threshold=NEVER, max_rounds=2)
    for _ in range(3):
        s.step(rgb())
    assert (s.done, s.round) == (False, 1)
    s.step(rgb())
    assert (s.done, s.ended["loop"], s.round) == (True, "max_rounds", 2)


def test_the_schedule_takes_its_parts_by_keyword(tmp_path: Path) -> None:
    cfg = H.load_config(C.DEFAULTS, None, ["device=cpu", "amp=false"])
    cfg["model"] = dict(TINY)
    from pyfill.models import build_model

    net = build_model("colorize", cfg["model"])
    opt = {"g": torch.optim.Adam(net.generator.parameters()), "d": torch.optim.Adam(net.discriminator.parameters())}
    ctx = H.DistContext()
    s = C.PhasedSchedule(net, g_train=net.generator, d_train=net.discriminator, updater=H.Updater(opt, ctx, cfg),
                         config=cfg, ctx=ctx)
    assert (s.round, s.phase, s.g_train, s.opt_d) == (0, "generator", net.generator, opt["d"])


def test_the_generator_step_reports_the_target_discriminators_realness_of_real_and_fill(tmp_path: Path) -> None:
    cfg = H.load_config(C.DEFAULTS, None, ["device=cpu", "amp=false"])
    cfg["model"] = dict(TINY)
    torch.manual_seed(0)
    from pyfill.models import build_model

    s = C.make_schedule(build_model("colorize", cfg["model"]), cfg, H.DistContext())
    l_norm, ab = C.split_lab(rgb())
    with torch.no_grad():
        fill = s.net.generator(l_norm)
        r1 = torch.sigmoid(s.target_d(l_norm, ab)).mean().item()  # realness: mean patch probability
        r2 = torch.sigmoid(s.target_d(l_norm, fill)).mean().item()
    logs = s.generator_step(l_norm, ab)
    assert logs["r1"] == pytest.approx(r1, abs=1e-6) and logs["r2"] == pytest.approx(r2, abs=1e-6)
    assert set(logs) == {"loss_g", "r1", "r2"}


def test_a_new_schedule_trains_g_against_a_frozen_copy_of_d_and_has_no_losses_yet(tmp_path: Path) -> None:
    s = schedule(tmp_path)
    assert all(not p.requires_grad for p in s.target_d.parameters())
    assert all(not p.requires_grad for p in s.net.discriminator.parameters())
    assert all(p.requires_grad for p in s.net.generator.parameters())
    state = s.state_dict()
    assert state["last_g"] is None and state["last_d"] is None and state["ended"] == {}


@pytest.mark.parametrize("key", ["g_max_steps", "d_max_steps", "max_rounds"])
def test_every_step_cap_must_be_at_least_one(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match=rf"^phased\.{key} must be >= 1 \(every condition has a step cap\)$"):
        schedule(tmp_path, **{key: 0})


def test_the_bce_generation_loss_is_the_sum_of_both_terms(tmp_path: Path) -> None:
    s = schedule(tmp_path, gen_loss="bce")
    r1, r2 = torch.tensor([[0.9], [0.6]]), torch.tensor([[0.2], [0.5]])
    want = -torch.log(r1).mean() - torch.log(r2).mean()  # both pushed towards "real"
    assert s.generation_loss(r1, r2).item() == pytest.approx(want.item(), rel=1e-6)


def test_split_lab_matches_scikit_image_lab_scaled_to_the_generators_range() -> None:
    from skimage.color import rgb2lab

    x = rgb()
    l_norm, ab = C.split_lab(x)
    lab = rgb2lab(x.permute(0, 2, 3, 1).numpy().astype("float64"))
    assert torch.allclose(l_norm[:, 0], torch.from_numpy(lab[..., 0] / 50.0 - 1.0).float(), atol=2e-3)
    assert torch.allclose(ab.permute(0, 2, 3, 1), torch.from_numpy(lab[..., 1:] / 110.0).float(), atol=2e-3)


class Critic(torch.nn.Module):
    """A discriminator whose patch logits are the lightness's mean times a weight: the samples of
    a batch get clearly different realness, unlike a small random network's near-constant one."""

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(weight))

    def forward(self, l_norm: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        return (l_norm.mean(dim=(1, 2, 3), keepdim=True) * self.weight).expand(-1, 1, 2, 2)


def test_the_discrimination_error_is_the_selected_samples_own_bce(tmp_path: Path) -> None:
    s = schedule(tmp_path, image_weight=0.0, result_weight=1.0, result_label="r2")
    del s.discriminator_step  # the real step (the helper put a stand-in on the instance)
    s.target_d, s.d_train = Critic(3.0), Critic(-2.0)
    # four images from dark to light: their realness differs clearly under both critics
    x = torch.linspace(0.1, 0.9, 4)[:, None, None, None].expand(4, 3, 16, 16).contiguous()
    l_norm, ab = C.split_lab(x)
    with torch.no_grad():
        r2 = torch.sigmoid(s.target_d(l_norm, ab)[:, 0, 0, 0])  # realness: the mean patch probability
        r3 = torch.sigmoid(s.d_train(l_norm, ab)[:, 0, 0, 0])
    assert float(r2.max() - r2.min()) > 0.5 and float(r3.max() - r3.min()) > 0.3
    s.p["real_threshold"] = float(r2.sort().values[-2])  # only the lightest image fools the target critic
    logs = s.discriminator_step(l_norm, ab)
    assert s.last_selection.tolist() == [False, False, False, True]
    p, q = float(r3[3]), float(r2[3])
    assert logs["loss_d"] == pytest.approx(-(q * math.log(p) + (1 - q) * math.log(1 - p)), rel=1e-5)
    assert logs["r3"] == pytest.approx(p, rel=1e-6) and logs["selected"] == 0.25
