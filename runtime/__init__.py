"""ncc.runtime: native code through llvmlite, and the models that call it.

    build            ncc.compile: a source lowered, compiled and bound (the compile pipeline)
    compiled_model   CompiledModel: the kernel bound to its weights, params, the call path
    training         gradients: one Training subclass per kind of source (nn, layers, neuron)
    optim            optimizers whose update is a native kernel; ncc.train
    calling          numpy arrays to kernel pointers; BoundKernel, shared by all of the above
    native           native code for a module, from the compile cache or LLVM
    cache            the on-disk compile cache
    engine           llvm dialect -> native code (llvmlite)
"""
