import os

import torch
from hypothesis import settings

# The tensors in the test suite are small: one intra-op thread is as fast as two on an idle machine
# and avoids the large slow-downs of oversubscribed OpenMP threads on a busy one.
torch.set_num_threads(1)
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=40, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# Module-scoped fixtures that run many SMC or sampler runs for a statistical check: every test that uses one is
# in the slow tier (`pytest -m "not slow"` leaves them out), whatever its own body costs.
STATISTICAL_FIXTURES = {"runs", "slides_runs", "gaussian_runs"}


def pytest_collection_modifyitems(config, items):


    for item in items:
        if STATISTICAL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


# ---- the command line in this process (a subprocess costs 5-10 s of imports here) ----
from dataclasses import dataclass  # noqa: E402

import pytest  # noqa: E402


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def smcdiff(capsys):
    """``smcdiff(*args)``: the command's main(args) in this process; returns the exit status and what it printed."""
    from smcdiff.cli import main

    def run(*args) -> Run:
        threads = torch.get_num_threads()
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:  # argparse: --help, --version and argument errors
            code = exit_.code
        finally:
            torch.set_num_threads(threads)
        out = capsys.readouterr()
        return Run(code, out.out, out.err)

    return run
