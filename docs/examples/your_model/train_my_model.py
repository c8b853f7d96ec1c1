"""Trains my_model.py's network on Fashion-MNIST and saves its state with Orbax.

    python train_my_model.py --steps 1500 --out fashion_net

Plain Flax and optax: nothing here is jaxcf's but loading the data set.
"""

import argparse
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from my_model import build
from orbax.checkpoint import v1 as ocp

import jaxcf


@nnx.jit
def train_step(model, optimizer, x, y):
    def loss(m):
        return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()

    value, grads = nnx.value_and_grad(loss)(model)
    optimizer.update(model, grads)
    return value


@nnx.jit
def predict(model, x):
    return jnp.argmax(model(x), axis=-1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("fashion_net"))
    args = parser.parse_args(argv)

    train = jaxcf.load_dataset("fashion_mnist", "train")
    test = jaxcf.load_dataset("fashion_mnist", "test")
    model = build()
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    rng = np.random.default_rng(0)
    for step in range(args.steps):
        batch = rng.integers(0, len(train), size=args.batch)
        loss = train_step(model, optimizer, train.inputs[batch], train.labels[batch])
        if step % 500 == 0:
            print(f"step {step}: loss {float(loss):.3f}", flush=True)
    accuracy = np.mean(
        [
            np.mean(
                np.asarray(predict(model, test.inputs[i : i + 1000])) == test.labels[i : i + 1000]
            )
            for i in range(0, len(test), 1000)
        ]
    )
    ocp.save(args.out.resolve(), nnx.state(model), overwrite=True)
    print(f"test accuracy {accuracy:.4f}; saved {args.out}")


if __name__ == "__main__":
    main()
