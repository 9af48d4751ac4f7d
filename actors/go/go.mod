module lattice.dev/actor

go 1.24
