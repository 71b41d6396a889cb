"""RolloutBatch.to: every tensor (and each named reward) moves; nothing is copied when already there."""

import torch

from tests.helpers import make_batch


def test_batch_to_moves_every_tensor_and_is_free_on_the_same_device():
    batch = make_batch([2, 3], rewards=[1.0, 0.0, 1.0, 0.5, 0.0])
    batch.advantages = torch.zeros(5)
    assert batch.to("cpu") is batch and batch.to(torch.device("cpu")) is batch
    moved = batch.to("meta")  # a second device every CPU build of torch has
    tensors = {name: value for name, value in vars(moved).items() if isinstance(value, torch.Tensor)}
    assert {"prompt_ids", "response_mask", "sampling_logprobs", "reward", "advantages"} <= set(tensors)
    assert all(value.device.type == "meta" for value in tensors.values())
    assert all(value.device.type == "meta" for value in moved.rewards.values())
    assert moved.texts == batch.texts and batch.prompt_ids.device.type == "cpu"
