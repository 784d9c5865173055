from xdsl.ir import Dialect

NN = Dialect("nn", [])
