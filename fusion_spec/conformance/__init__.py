"""The conformance suite: golden bundle, generator, runner and verifier.

Modules from the bottom floor up (each imports only modules listed before it):

- :mod:`.tolerance`: the per-dtype error model and the one comparison of tensors;
  :mod:`.strict_json`, :mod:`.safetensors_io`: the file formats.
- :mod:`.bundle`: the manifest's schema, the bundle on disk, rebuilding and calling a case's operator.
- :mod:`.arrays`: each backend's arrays (conversion, device, settings).
- :mod:`.backward`: the gradient goldens (each backend's VJP, the gradient files, finite differences).
- :mod:`.reference`: the float64 reference results, computed once per case, dtype and kind.
- :mod:`.runner`: runs the bundle on NumPy / PyTorch / JAX / MLX in a chosen dtype and device.
- :mod:`.verify`: checks outputs written by another implementation against the bundle.
- :mod:`.grad`: the same two checks for the backward pass.
- :mod:`.cases`: the case definitions, one module per operator family; :mod:`.generate` writes the
  bundle (``manifest.json`` + safetensors files) from them and the NumPy reference.
"""

from .bundle import FORMAT_VERSION, PACKAGE_BUNDLE, Bundle

__all__ = ["FORMAT_VERSION", "PACKAGE_BUNDLE", "Bundle"]
