"""Sampling for SCST: the policy's own distribution, and labels that end at each sample's first EOS."""

import copy

import torch

from vitgpt2.loss import IGNORE_INDEX
from vitgpt2.scst.sampling import generating_with, greedy_config, sample_labels, sampling_config
from vitgpt2.scst.trainer import baseline_of, policy_gradient_loss

EOS, START = 0, 7


def test_labels_keep_each_sample_up_to_and_including_its_first_eos():
    sequences = torch.tensor(
        [
            [START, 5, 6, EOS, EOS, EOS],  # ended, then padded with EOS (GPT-2's pad)
            [START, EOS, EOS, EOS, EOS, EOS],  # an empty caption: its EOS is still a choice the policy made
            [START, 5, 6, 5, 6, 5],  # cut at the length limit: every token counts
            [START, 4, EOS, 4, EOS, EOS],  # tokens after the first EOS are not part of the sample
        ]
    )
    labels = sample_labels(sequences, EOS, per_image=2)
    assert labels.shape == (2, 2, 5)
    I = IGNORE_INDEX  # noqa: E741
    assert labels.view(4, 5).tolist() == [[5, 6, EOS, I, I], [EOS, I, I, I, I], [5, 6, 5, 6, 5], [4, EOS, I, I, I]]


def test_sampling_draws_from_the_model_itself_whatever_the_saved_decoding_controls(captioner):
    """Beams, repetition penalty, no-repeat n-grams, min length and top-k would reshape the distribution the
    samples come from; none of them may reach SCST's sampling."""
    model, _ = captioner
    saved = copy.deepcopy(model.generation_config)
    saved.update(num_beams=4, repetition_penalty=1.5, no_repeat_ngram_size=2, min_new_tokens=3, top_k=5)
    config = sampling_config(saved, num_samples=5, temperature=0.7, max_new_tokens=9)
    assert (config.do_sample, config.num_return_sequences, config.temperature, config.top_k) == (True, 5, 0.7, 0)
    assert config.max_new_tokens == 9 and config.eos_token_id == saved.eos_token_id

    # What generate does with it: the same samples as a model that never had those controls saved (passed as an
    # argument, generate would fill the options left at their defaults from the model's own generation_config).
    pixels = torch.randn(2, 3, 32, 32)
    controlled, plain = copy.deepcopy(model), copy.deepcopy(model)
    controlled.generation_config = saved
    samples = {}
    for name, policy in (("controlled", controlled), ("plain", plain)):
        torch.manual_seed(0)
        with torch.no_grad():
            with generating_with(policy, config):
                samples[name] = policy.generate(pixel_values=pixels)
    assert torch.equal(samples["controlled"], samples["plain"])
    assert samples["plain"].shape[0] == 10 and samples["plain"].shape[1] <= 10
    assert len({tuple(row) for row in samples["plain"].tolist()}) > 2  # samples, not five copies of one caption
    # ... and the controls do change what is generated when they apply (the comparison above can fail)
    torch.manual_seed(0)
    with torch.no_grad():
        beams = controlled.generate(pixel_values=pixels)
        with generating_with(controlled, greedy_config(saved, max_new_tokens=9)):
            greedy = controlled.generate(pixel_values=pixels)
        with generating_with(plain, greedy_config(saved, max_new_tokens=9)):
            plain_greedy = plain.generate(pixel_values=pixels)
    assert torch.equal(greedy, plain_greedy) and controlled.generation_config is saved  # restored after the block
    assert not torch.equal(beams[:, : greedy.shape[1]], greedy[:, : beams.shape[1]])


def test_baseline_is_the_mean_of_the_other_samples():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 6.0], [0.0, 0.0, 0.0, 4.0]])
    expected = torch.tensor([[11 / 3, 10 / 3, 3.0, 2.0], [4 / 3, 4 / 3, 4 / 3, 0.0]])
    torch.testing.assert_close(baseline_of(rewards), expected)
    # the advantages of an image sum to zero: the baseline removes what all its samples share
    torch.testing.assert_close((rewards - baseline_of(rewards)).sum(dim=1), torch.zeros(2), atol=1e-6, rtol=0)


def test_policy_gradient_loss_weights_each_samples_log_probability_by_its_advantage():
    logits = torch.randn(3, 4, 6, requires_grad=True)
    tokens = torch.tensor([[1, 2, 0, 0], [3, 0, 0, 0], [4, 4, 4, 4]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    log_probs = torch.log_softmax(logits, dim=-1).gather(-1, tokens[..., None])[..., 0]
    advantages = torch.tensor([0.5, -1.0, 2.0])
    loss = policy_gradient_loss(-log_probs, mask, advantages)
    expected = -(advantages[:, None] * log_probs * mask).sum() / mask.sum()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert logits.grad[0, 3].abs().sum() == 0  # nothing after a sample's EOS is trained
    # a positive advantage raises the sample's tokens, a negative one lowers them
    step = -logits.grad
    assert step[0, 0, 1] > 0 and step[1, 0, 3] < 0
