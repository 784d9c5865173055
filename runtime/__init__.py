"""ncc.runtime: the native-code engine (llvmlite JIT) and CompiledModel."""
