"""The conformance suite: golden bundle, generator, runner and verifier.

- :mod:`.cases`: the case definitions, one declarative list per operator family.
- :mod:`.generate`: writes the bundle (``manifest.json`` + safetensors files) from the NumPy reference.
- :mod:`.runner`: runs the bundle on NumPy / PyTorch / JAX / MLX in a chosen dtype and device.
- :mod:`.verify`: checks outputs written by another implementation against the bundle.
- :mod:`.tolerance`: the per-dtype tolerance model; :mod:`.safetensors_io`: the file format.
"""

from .bundle import FORMAT_VERSION, PACKAGE_BUNDLE, Bundle

__all__ = ["FORMAT_VERSION", "PACKAGE_BUNDLE", "Bundle"]
