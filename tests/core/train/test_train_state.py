"""TrainState: the loop's bookkeeping, its early stop, and the dict last.pt holds."""

from __future__ import annotations

import math

from xmr_utils.core.train import TrainState, early_stop_reason

#: The ``state`` dict of a last.pt written before TrainState existed.
OLD_STATE = {
    "epoch": 3,
    "best_rsum": 120.5,
    "best_epoch": 2,
    "best_val": {"val_rsum": 120.5},
    "bad": 1,
    "stopped": False,
}


def test_state_reads_and_writes_the_dict_older_files_hold() -> None:
    state = TrainState.from_dict(OLD_STATE)
    assert state == TrainState(3, 120.5, 2, {"val_rsum": 120.5}, 1, False)
    assert state.to_dict() == OLD_STATE and list(state.to_dict()) == list(OLD_STATE)
    fresh = TrainState()
    assert (fresh.epoch, fresh.best_rsum, fresh.best_val, fresh.stopped) == (
        0,
        -math.inf,
        {},
        False,
    )


def test_validated_keeps_the_best_and_stops_after_patience() -> None:
    state = TrainState()
    assert state.validated(1, {"val_rsum": 10.0}, patience=2)
    assert not state.validated(2, {"val_rsum": 10.0}, patience=2)  # equal is not better
    assert (state.bad, state.stopped) == (1, False)
    assert state.validated(3, {"val_rsum": 11.0}, patience=2)
    assert (state.best_epoch, state.best_rsum, state.bad) == (3, 11.0, 0)
    assert not state.validated(4, {"val_rsum": 1.0}, patience=2)
    assert not state.validated(5, {"val_rsum": 1.0}, patience=2)
    state.epoch = 5
    assert state.stopped and state.finished(epochs=30) and state.best_epoch == 3
    assert early_stop_reason(state) == "early stop at epoch 5: no better val rsum for 2 epochs"
    assert early_stop_reason(state, eval_every=2).endswith("for 2 validations")
    never = TrainState()
    for epoch in range(1, 20):
        never.validated(epoch, {"val_rsum": 0.0}, patience=None)
    assert not never.stopped and not never.finished(epochs=20)
    never.epoch = 20
    assert never.finished(epochs=20)
