import os

import torch
from hypothesis import settings

# The tensors in the test suite are small: one intra-op thread is as fast as two on an idle machine
# and avoids the large slow-downs of oversubscribed OpenMP threads on a busy one.
torch.set_num_threads(1)
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=40, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
