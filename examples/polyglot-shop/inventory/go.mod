module lattice.dev/examples/polyglot-shop/inventory

go 1.24

require lattice.dev/actor v0.0.0

replace lattice.dev/actor => ../../../actors/go
