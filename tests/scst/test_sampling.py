"""Sampling for SCST: the policy's own distribution, and labels that end at each sample's first EOS."""

import copy
from collections import defaultdict

import torch

from vitgpt2.data.collator import pad_labels
from vitgpt2.loss import IGNORE_INDEX, caption_loss
from vitgpt2.scst.arguments import ScstArguments
from vitgpt2.scst.sampling import (
    ended,
    generating_with,
    greedy_config,
    sample_labels,
    sampling_config,
    with_references,
)
from vitgpt2.scst.trainer import ScstTrainer, baseline_of, disable_dropout, policy_gradient_loss

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
    # the reward's end word goes to the captions that generated their EOS, not to the one cut at the limit
    assert ended(sequences, EOS) == [True, True, False, True]
    assert ended(torch.tensor([[EOS, 5, 6]]), EOS) == [False]  # GPT-2 starts with its EOS token: not an end


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


def test_references_join_the_samples_in_one_batch():
    I = IGNORE_INDEX  # noqa: E741
    samples = torch.tensor([[[5, EOS], [6, 6]], [[EOS, I], [4, EOS]]])  # 2 images x 2 samples, length 2
    references = torch.tensor([[[1, 2, EOS], [I, I, I]], [[3, EOS, I], [2, 2, EOS]]])  # the first has 1 reference
    labels, is_sample = with_references(samples, references)
    assert labels.shape == (2, 4, 3)
    assert labels[0].tolist() == [[5, EOS, I], [6, 6, I], [1, 2, EOS], [I, I, I]]
    assert is_sample.tolist() == [True, True, False, True, True, False, False]  # the absent reference is no row


def test_mixed_objective_adds_the_references_cross_entropy(captioner):
    """--scst_ce_weight w: the step's loss is SCST's plus w x the encode-once cross-entropy of the references, in
    one forward, and the logged entropy stays the samples' own."""
    model = copy.deepcopy(captioner[0]).train()  # compute_loss's SCST path
    disable_dropout(model)  # as ScstTrainer does
    eos = captioner[1].eos_token_id
    pixels = torch.randn(2, 3, 32, 32)
    sequences = torch.tensor([[START, 5, 6, eos], [START, 8, eos, eos], [START, 9, 9, 9], [START, eos, eos, eos]])
    references = pad_labels([[[5, 6, 7, eos], [5, eos]], [[9, 10, eos]]])
    rewards = torch.tensor([[1.0, 0.0], [0.5, 2.0]])

    def step(weight: float):
        trainer = object.__new__(ScstTrainer)
        trainer.model, trainer._stats, trainer._sampling = model, defaultdict(list), None
        trainer.scst_args = ScstArguments(scst=True, scst_num_samples=2, scst_ce_weight=weight)
        trainer._generate = lambda *args: sequences
        trainer._rewards = lambda *args: rewards
        loss = trainer.compute_loss(
            model, {"pixel_values": pixels, "image_index": torch.arange(2), "labels": references}
        )
        return loss, trainer._stats

    alone, alone_stats = step(0.0)
    mixed, mixed_stats = step(0.5)
    cross_entropy, _ = caption_loss(model, pixels, references)
    torch.testing.assert_close(mixed, alone + 0.5 * cross_entropy)
    assert mixed_stats["reference_loss"] == [cross_entropy.item()] and "reference_loss" not in alone_stats
    assert mixed_stats["entropy"] == alone_stats["entropy"]
