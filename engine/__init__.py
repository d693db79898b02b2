"""The training engine shared by every task.

=================  ====================================================================
module             what it does
=================  ====================================================================
``loop``           `TrainLoop`: batch, step, hooks; `HookBase`
``hooks``          BatchNorm statistics sync, evaluation and checkpoint hooks
``logger``         JSON-lines / text logging and the progress bar, as a hook
``checkpoint``     atomic, verified checkpoints; export for deployment
``weights``        loading weights and optimizer state
``optimization``   learning-rate scaling and schedules, weight-decay masks, SGD settings
``loss_scaler``    static and dynamic loss scaling for float16
``distributed``    Horovod (or a single process) behind one small interface
``tasks``          what differs per task: losses, metrics (classification now)
=================  ====================================================================
"""
