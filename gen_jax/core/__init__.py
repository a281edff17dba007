"""The training core: the family contract, the train loop, train state, optimizers, the data-parallel mesh, rng streams, vmapped trials."""
