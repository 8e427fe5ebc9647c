"""The training metrics of a metrics line average exactly the steps since the previous line."""

import jax
import numpy as np
import optax
import pytest

from l2reg import training


def _per_step_loss_and_accuracy(config) -> tuple[np.ndarray, np.ndarray]:
    """Each step's batch loss and accuracy, computed outside the trainer from the parameters the
    step starts from: the model on the step's normalized batch, cross-entropy and argmax."""
    trainer = training.create_trainer(config)

    @jax.jit
    def loss_and_accuracy(params, images, labels):
        logits = trainer.model.apply(
            {"params": params}, trainer.dataset.preprocess(images), train=True
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, (logits.argmax(-1) == labels).mean()

    state, batches = trainer.init_state(), trainer.train_batches(0)
    losses, accuracies = [], []
    for _ in range(config.steps):
        images, labels = next(batches)
        loss, accuracy = loss_and_accuracy(state.params, images, labels)
        losses.append(loss)
        accuracies.append(accuracy)
        state = trainer.sharded_train_step(
            state, images, labels
        )  # donates the state: read it first
    return np.asarray(jax.device_get(losses)), np.asarray(jax.device_get(accuracies))


@pytest.mark.slow
def test_train_metrics_average_the_steps_since_the_previous_line(small_config, tmp_path):
    # 25 steps with a line every 10: the last line, at the end, averages only steps 21 to 25.
    small_config.steps = 25
    losses, accuracies = _per_step_loss_and_accuracy(small_config)
    assert losses[-1] < losses[0] - 0.1  # the loss moves: windows of other steps would differ

    training.train_and_evaluate(small_config, str(tmp_path))
    lines = training.read_metrics(tmp_path)

    assert [line["step"] for line in lines] == [10, 20, 25]
    for line, (first, last) in zip(lines, [(1, 10), (11, 20), (21, 25)], strict=True):
        window = slice(first - 1, last)
        np.testing.assert_allclose(line["train_loss"], losses[window].mean(), rtol=1e-5)
        np.testing.assert_allclose(line["train_accuracy"], accuracies[window].mean(), atol=1e-6)
