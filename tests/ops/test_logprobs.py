"""The chunked log-prob/entropy op equals the naive full-logits computation in values and gradients."""

import pytest
import torch

from rlpost.ops.logprobs import naive_token_logprobs, token_logprobs


def _inputs(batch, length, hidden_size, vocab, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, length, hidden_size, generator=generator).to(dtype).requires_grad_(True)
    weight = (torch.randn(vocab, hidden_size, generator=generator) / hidden_size**0.5).to(dtype).requires_grad_(True)
    targets = torch.randint(0, vocab, (batch, length), generator=generator)
    upstream = torch.randn(2, batch, length, generator=generator)  # weights of the two outputs in a scalar loss
    return hidden, weight, targets, upstream


def _values_and_grads(fn, hidden, weight, targets, upstream, **kwargs):
    hidden = hidden.detach().clone().requires_grad_(True)
    weight = weight.detach().clone().requires_grad_(True)
    logprobs, entropy = fn(hidden, weight, targets, **kwargs)
    ((logprobs * upstream[0]).sum() + (entropy * upstream[1]).sum()).backward()
    return logprobs.detach(), entropy.detach(), hidden.grad, weight.grad


@pytest.mark.parametrize(
    "batch,length,hidden_size,vocab,chunk_rows,temperature",
    [
        (2, 5, 8, 11, 3, 1.0),  # chunk size does not divide N = 10
        (3, 7, 16, 50, 4, 0.7),  # temperature != 1
        (1, 9, 32, 83, 100, 1.3),  # one chunk larger than N
        (4, 6, 8, 17, 1, 2.0),  # one row per chunk
        (2, 33, 24, 257, 7, 1.0),
    ],
)
def test_chunked_equals_naive_float32(batch, length, hidden_size, vocab, chunk_rows, temperature):
    hidden, weight, targets, upstream = _inputs(batch, length, hidden_size, vocab)
    chunked = _values_and_grads(
        token_logprobs, hidden, weight, targets, upstream, temperature=temperature, chunk_rows=chunk_rows
    )
    naive = _values_and_grads(naive_token_logprobs, hidden, weight, targets, upstream, temperature=temperature)
    for name, got, want in zip(("logprobs", "entropy", "d_hidden", "d_weight"), chunked, naive):
        assert got.dtype == want.dtype, name
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=name)


def test_gradcheck_float64():
    hidden, weight, targets, _ = _inputs(2, 3, 4, 7, dtype=torch.float64)

    def fn(hidden, weight):
        logprobs, entropy = token_logprobs(hidden, weight, targets, temperature=0.8, chunk_rows=4)
        return logprobs, entropy

    # float32 logits inside: compare to finite differences at float32 precision
    assert torch.autograd.gradcheck(fn, (hidden, weight), eps=1e-3, atol=1e-2, rtol=1e-2)


def test_logprob_only_gradient_ignores_entropy():
    hidden, weight, targets, upstream = _inputs(2, 5, 8, 13)
    upstream[1] = 0.0
    got = _values_and_grads(token_logprobs, hidden, weight, targets, upstream, chunk_rows=3, with_entropy=False)
    want = _values_and_grads(naive_token_logprobs, hidden, weight, targets, upstream, with_entropy=False)
    assert torch.count_nonzero(got[1]) == 0
    for index in (0, 2, 3):
        torch.testing.assert_close(got[index], want[index], rtol=1e-5, atol=1e-5)


def test_entropy_only_loss():
    hidden, weight, targets, _ = _inputs(2, 4, 8, 13)
    hidden = hidden.detach().requires_grad_(True)
    _, entropy = token_logprobs(hidden, weight, targets, chunk_rows=3)
    entropy.sum().backward()  # the log-prob output gets no gradient: its grad arrives as None
    hidden_naive = hidden.detach().clone().requires_grad_(True)
    naive_token_logprobs(hidden_naive, weight, targets)[1].sum().backward()
    torch.testing.assert_close(hidden.grad, hidden_naive.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk_rows,temperature", [(5, 1.0), (8, 0.6)])
def test_bf16_inputs_float32_outputs(chunk_rows, temperature):
    hidden, weight, targets, upstream = _inputs(2, 9, 32, 61, dtype=torch.bfloat16)
    chunked = _values_and_grads(
        token_logprobs, hidden, weight, targets, upstream, temperature=temperature, chunk_rows=chunk_rows
    )
    naive = _values_and_grads(naive_token_logprobs, hidden, weight, targets, upstream, temperature=temperature)
    assert chunked[0].dtype == torch.float32 and chunked[1].dtype == torch.float32
    assert chunked[2].dtype == torch.bfloat16 and chunked[3].dtype == torch.bfloat16
    # values: same bf16 matmul, float32 softmax -> equal to float32 rounding
    torch.testing.assert_close(chunked[0], naive[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(chunked[1], naive[1], rtol=1e-5, atol=1e-5)
    # gradients are bf16 tensors: equal to bf16 rounding (the weight gradient is summed over chunks in float32)
    torch.testing.assert_close(chunked[2], naive[2], rtol=1.6e-2, atol=1e-2)
    torch.testing.assert_close(chunked[3], naive[3], rtol=1.6e-2, atol=1e-2)


def test_no_grad_path_and_shapes():
    hidden, weight, targets, _ = _inputs(3, 4, 8, 13)
    with torch.no_grad():
        logprobs, entropy = token_logprobs(hidden, weight, targets, chunk_rows=5)
    assert logprobs.shape == entropy.shape == (3, 4)
    assert not logprobs.requires_grad
    assert torch.all(logprobs <= 0) and torch.all(entropy >= 0)


def test_bad_chunk_rows():
    hidden, weight, targets, _ = _inputs(1, 2, 4, 5)
    with pytest.raises(ValueError, match="chunk_rows"):
        token_logprobs(hidden, weight, targets, chunk_rows=0)
