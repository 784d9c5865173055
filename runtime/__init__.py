"""ncc.runtime: native code through llvmlite and CompiledModel.

Empty for now: native code generation is the next milestone (see README)."""
