"""Interchange exporters: NIR (neuromorphic tools and chips) and ONNX (everything else).

* :mod:`.onnx_int` writes the whole integer graph in standard integer ONNX ops, so that
  onnxruntime is a second, independent executor of the integer semantics.
* :mod:`.onnx_float` exports the float torch model with the neuron state unrolled over T.
* :mod:`.nir_export` / :mod:`.nir_import` map the integer graph to NIR 1.0 and back;
  :mod:`.nir_judges` runs the export in SpikingJelly, snnTorch and Norse against the golden
  spikes; :mod:`.nir_model` compiles a ``model.nir`` given as ``svf-compile`` MODEL.

Each module imports its third-party package lazily and raises :class:`~svf_deploy.models.
errors.ExportError` with an install hint when it is missing.
"""
