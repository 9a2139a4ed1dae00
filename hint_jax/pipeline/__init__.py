"""Whole jobs as a Python API: typed specs in, records and files out.

`run_train` trains (optionally on a poisoned set, optionally defended)
resumably into a folder and writes the same ``result.json`` and
``metrics.jsonl`` as ``hint-jax train``; every defence is a `JobDefence`
registered as a `DefenceKind` (`register_defence` adds your own);
`run_poison` and `run_target_poison` craft poisoned sets with the attacks
registered as `AttackKind` / `TargetedKind` (`register_attack`,
`register_targeted` add your own);
`run_attribute` scores training examples for test examples
with one of `hint_jax.attribution`'s estimators; `run_groundtruth`
retrains many models on subsets or leave-one-out sets (the ground truth
those scores are measured against). Nothing here prints: pass a
`Reporter` to hear progress.
"""

from hint_jax.pipeline import checkpoint, files
from hint_jax.pipeline.attribution import AttributeJob, run_attribute
from hint_jax.pipeline.groundtruth import (GroundTruthJob, load_groundtruth,
                                           run_groundtruth)
from hint_jax.pipeline.defences import (NOISE_FILE, DefenceKind,
                                        JobDefence, hint_poison_record,
                                        make_defence, register_defence)
from hint_jax.pipeline.specs import (DataSpec, DefenceSpec, EpicSpec,
                                     HintSpec, TrainJob, TrainSpec,
                                     defence_name, resolve_defence,
                                     resolve_hint)
from hint_jax.pipeline.training import (METRICS_FILE, RESULT_FILE, Reporter,
                                        clean_model_folder,
                                        clean_train_config, load_splits,
                                        run_train, target_outcome,
                                        train_clean)
from hint_jax.pipeline.poisons import (AttackContext, AttackKind, Crafting,
                                       DapSpec, DcSpec, DurpSpec, PgdSpec,
                                       TargetCrafting, TargetedKind,
                                       register_attack, register_targeted)
from hint_jax.pipeline.poisoning import (PoisonSpec, TargetSpec, VictimSpec,
                                         run_poison, run_target_poison)
