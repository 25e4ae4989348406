"""The 0.2 API's shape: proposals that own their options, run-level options grouped once, one clear line per
careless argument, threads chosen for the call and restored."""

import dataclasses

import pytest
import torch

from smcdiff import VP, Bootstrap, GaussianScore, MCGdiff, RunOptions, Twisted, inpaint, restore, smc_sample
from smcdiff.proposals import PROPOSALS, Proposal, build_proposal, default_proposal, proposal_flags, resolve_proposal
from smcdiff.threads import default_threads, torch_threads

F64 = torch.float64


def _gaussian(d: int = 3):
    sde = VP()
    return GaussianScore(torch.zeros(d, dtype=F64), torch.eye(d, dtype=F64), sde), sde


def test_names_and_objects_give_the_same_run():
    score, sde = _gaussian()
    y = torch.randn(2, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    mask = torch.tensor([True, False, True])
    kw = dict(particles=8, steps=5, noise_std=0.1)
    for name, cls in PROPOSALS.items():
        if cls.noiseless_only:
            continue
        a = smc_sample(score, sde, y, mask, proposal=name, generator=torch.Generator().manual_seed(1), **kw)
        b = smc_sample(score, sde, y, mask, proposal=cls(), generator=torch.Generator().manual_seed(1), **kw)
        assert torch.equal(a.particles, b.particles) and torch.equal(a.log_weights, b.log_weights)


def test_the_default_rule_lives_in_one_place():
    assert isinstance(default_proposal(0.0), Bootstrap) and isinstance(default_proposal(0.1), Twisted)
    assert isinstance(resolve_proposal(None, 0.0), Bootstrap) and isinstance(resolve_proposal(None, 0.2), Twisted)
    twisted = Twisted(twist_variance=2.0)
    assert resolve_proposal(twisted, 0.1) is twisted
    with pytest.raises(ValueError, match="needs noise_std=0"):
        resolve_proposal(Bootstrap(), 0.1)
    with pytest.raises(ValueError, match="proposal must be one of"):
        resolve_proposal("nope", 0.0)
    with pytest.raises(ValueError, match="proposal must be a name"):
        resolve_proposal(3, 0.0)


def test_the_noisy_default_needs_autograd_and_says_what_to_use_instead():
    score, sde = _gaussian()

    def frozen(x, t):  # a score computed outside autograd, as a compiled or exported network would be
        with torch.no_grad():
            return score(x, t)

    y = torch.randn(2, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    mask = torch.tensor([True, False, True])
    kw = dict(particles=4, steps=5, noise_std=0.1)
    with pytest.raises(ValueError, match=r"proposal='twisted' \(the default for noisy observations\).*proposal='mcgdiff'"):
        smc_sample(frozen, sde, y, mask, generator=torch.Generator().manual_seed(1), **kw)
    out = smc_sample(frozen, sde, y, mask, proposal="mcgdiff", generator=torch.Generator().manual_seed(1), **kw)
    assert out.particles.shape == (2, 4, 3)


def test_proposals_are_frozen_and_report_their_cost():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Bootstrap().corrector_steps = 2
    assert Bootstrap(corrector_steps=2).evaluations_per_step == 3 and Bootstrap().backward_passes_per_step == 0
    assert Twisted(corrector_steps=1).backward_passes_per_step == 2 and MCGdiff().evaluations_per_step == 1
    assert str(Twisted(twist_variance=4.0)) == "twisted(twist_variance=4.0)" and str(MCGdiff()) == "mcgdiff"
    assert Twisted(twist_variance=float("inf")).options()["twist_variance"] == float("inf")


def test_the_builder_names_flags_and_the_proposals_that_have_them():
    flag = lambda name: "--" + name.replace("_", "-")  # noqa: E731
    assert build_proposal("twisted", 0.1, {"twist_variance": 3.0}).twist_variance == 3.0
    assert isinstance(build_proposal(None, 0.0, {"corrector_steps": 1}), Bootstrap)
    with pytest.raises(ValueError, match="--twist-variance applies to --proposal twisted, not bootstrap"):
        build_proposal(None, 0.0, {"twist_variance": 3.0}, spell=flag)
    with pytest.raises(ValueError, match="--corrector-steps must be a non-negative integer"):
        build_proposal("bootstrap", 0.0, {"corrector_steps": -1}, spell=flag)
    assert set(proposal_flags()) == {"corrector_steps", "corrector_size", "twist_variance"}


def test_a_new_proposal_is_one_class_and_its_registry_line(monkeypatch):
    """The docs' example: a proposal with an option, passed as an object or registered by name."""
    from smcdiff.proposals.mcgdiff import MCGdiffModel

    @dataclasses.dataclass(frozen=True)
    class Plain(Proposal):
        scale: float = dataclasses.field(default=1.0, metadata={"help": "unused scale", "type": float})
        name = "plain"

        def __post_init__(self):
            if not self.scale > 0:
                raise ValueError(f"scale must be positive, got {self.scale!r}")

        def build(self, problem):
            return MCGdiffModel(problem)

    score, sde = _gaussian()
    y = torch.zeros(1, 3, dtype=F64)
    mask = torch.tensor([True, False, False])
    out = smc_sample(score, sde, y, mask, particles=4, steps=3, proposal=Plain(scale=2.0), noise_std=0.1)
    assert out.particles.shape == (1, 4, 3)
    monkeypatch.setitem(PROPOSALS, "plain", Plain)
    assert "scale" in proposal_flags()
    assert isinstance(resolve_proposal("plain", 0.0), Plain)
    with pytest.raises(ValueError, match="scale must be positive"):
        build_proposal("plain", 0.0, {"scale": -1.0})


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(resampling="nope"), "resampling must be one of"),
        (dict(ess_threshold=1.5), "ess_threshold"),
        (dict(ess_threshold=True), "ess_threshold"),
        (dict(chunk_size=0), "chunk_size"),
        (dict(chunk_size=True), "chunk_size"),
        (dict(progress="yes"), "progress"),
        (dict(callback=3), "callback"),
        (dict(placement="ranks"), "placement"),
        (dict(populations=0), "populations"),
        (dict(threads=0), "threads"),
    ],
)
def test_run_options_are_checked_at_construction(changes, match):
    with pytest.raises(ValueError, match=match):
        RunOptions(**changes)


def test_options_must_be_run_options():
    score, sde = _gaussian()
    with pytest.raises(ValueError, match="options must be a smcdiff RunOptions"):
        smc_sample(score, sde, torch.zeros(1, 3, dtype=F64), torch.tensor([True, False, False]), particles=2, steps=2,
                   options={"ess_threshold": 1.0})


def test_threads_are_set_for_the_call_and_restored(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("TORCH_NUM_THREADS", raising=False)
    assert default_threads(cpus=2) == 1 and default_threads(cpus=64) >= 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads(cpus=2) == torch.get_num_threads()
    before = torch.get_num_threads()
    with torch_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads("torch") as n:
        assert n == before


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(noise_std=-0.1), "noise_std must be a finite number >= 0"),
        (dict(generator=0), "generator must be a torch.Generator or None.*manual_seed"),
        (dict(device="cuda:7" if torch.cuda.is_available() else "cuda"), "device='cuda(:7)?' is not available here"),
        (dict(device="nonsense"), "device='nonsense' is not available here"),
        (dict(proposal="bootstrap", noise_std=0.1), "needs noise_std=0"),
        (dict(method="replacement", proposal="mcgdiff"), "proposal applies to method='smc'"),
        (dict(method="replacement", options=RunOptions(ess_threshold=1.0)), "ess_threshold apply to SMC only"),
    ],
)
def test_restore_names_the_argument(kwargs, match):
    image = torch.zeros(1, 1, 8, 8)
    mask = torch.ones(1, 1, 8, 8, dtype=torch.bool)
    mask[..., 2:6, 2:6] = False
    with pytest.raises(ValueError, match=match):
        restore("digits", image, mask, particles=2, steps=2, **kwargs)


def test_inpaint_refuses_a_mask_that_observes_nothing():
    image = torch.zeros(2, 1, 8, 8)
    mask = torch.ones(2, 1, 8, 8, dtype=torch.bool)
    mask[1] = False
    with pytest.raises(ValueError, match=r"mask observes no pixel of image\(s\) \[1\]"):
        inpaint("digits", image, mask, particles=2, steps=2)


def test_restore_counts_evaluations_from_the_proposal_and_records_its_options():
    image = torch.zeros(1, 1, 8, 8)
    mask = torch.ones(1, 1, 8, 8, dtype=torch.bool)
    mask[..., :4] = False
    with pytest.warns(UserWarning, match="steps"):
        res = restore("digits", image, mask, particles=2, steps=3, noise_std=0.05, proposal=Twisted(corrector_steps=1),
                      generator=torch.Generator().manual_seed(0), options=RunOptions(populations=2))
    assert res.proposal == "twisted" and res.model_evaluations == 2 * 2 * 3 * 2
    assert res.settings["proposal_options"] == {"twist_variance": 1.0, "corrector_steps": 1, "corrector_size": 1.0}
    assert res.settings["populations"] == 2 and res.samples.shape == (1, 4, 1, 8, 8)
