"""ncc.runtime: native code through llvmlite and CompiledModel.

    compiled_model   ncc.compile -> CompiledModel (input checks, params, calling)
    cache            the on-disk compile cache
    abi              the kernel ABI shared with the lowering passes
    engine           llvm dialect -> native code (llvmlite)
"""
