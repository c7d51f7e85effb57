"""Monitoring never changes training: a run with sampling rounds every step has the losses and weights of
a run without the monitor, bit for bit, because every RNG is put back after the preflight and each round."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from predictions import PredictionsCallback
from predictions.training.rng import rng_untouched
from tests import helpers_training as h


def test_every_generator_is_put_back_even_when_the_block_raises():
    before = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(1), random.seed(1), np.random.seed(1)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(1), random.seed(1), np.random.seed(1)
    with pytest.raises(ValueError), rng_untouched():
        torch.rand(100), random.random(), np.random.rand(7)
        raise ValueError("a failed round")
    after = (torch.rand(3), random.random(), np.random.rand())
    assert (
        torch.equal(after[0], expected[0])
        and after[1:] == expected[1:]
        and not torch.equal(after[0], before[0])
    )


def losses_and_weights(tmp_path, callbacks) -> tuple[list[float], dict[str, torch.Tensor]]:
    """Train 8 steps of a GPT-2 with dropout, logging the loss every step."""
    trainer = h.trainer(tmp_path, callbacks, logging_strategy="steps", logging_steps=1)
    assert trainer.model.config.resid_pdrop > 0  # dropout draws from torch's generator every step
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return losses, {name: value.detach().clone() for name, value in trainer.model.state_dict().items()}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sampling_rounds_every_step_leave_training_bit_identical(tmp_path, sqlite_store):
    plain_losses, plain_weights = losses_and_weights(tmp_path / "plain", [])
    callback = PredictionsCallback(
        h.pairs(12),
        num_samples=6,
        max_new_tokens=6,
        every_n_steps=1,
        generation_kwargs={"do_sample": True, "top_k": 0},
        store=sqlite_store,
    )
    losses, weights = losses_and_weights(tmp_path / "monitored", [callback])
    assert sqlite_store.rounds(callback.job_id)["step"].tolist() == list(range(1, 9))  # a round every step
    assert len(losses) == 8 and losses == plain_losses
    assert all(torch.equal(weights[name], plain_weights[name]) for name in plain_weights)
