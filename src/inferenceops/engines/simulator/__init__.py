"""A simulated GPU inference engine (vLLM-like) served as a raw ASGI application.

For the embedded default, tests and benchmarks: OpenAI-compatible endpoints,
deterministic filler text, and timing/capacity behaviour from a profile
(continuous batching, KV budget, prefix cache, LoRA slots, vLLM metrics).
Always labelled a simulator. Public names:

- :func:`load_profile` / :func:`builtin_profiles` / :class:`SimulatorProfile`
- :func:`build_simulator_app` → an ASGI3 callable (``SimulatorApp``)
"""

from ._asgi import ASGIApp
from .app import SimulatorApp, build_simulator_app
from .profile import SimulatorProfile, builtin_profiles, load_profile

__all__ = [
    "ASGIApp",
    "SimulatorApp",
    "SimulatorProfile",
    "build_simulator_app",
    "builtin_profiles",
    "load_profile",
]
