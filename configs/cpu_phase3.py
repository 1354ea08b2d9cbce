# Phase 3 of the one-CPU speedrun: continue from phase 2's export (architecture included) on the
# synthetic files mixed with phase-2 data, fresh optimizer, re-warm then linear to 0
# (configs/phase3.py's shape).
#   python train.py configs/cpu_phase3.py --data_dir=D/p3 --init_from=R/p2/export --out_dir=R/p3
# Batch: micro_batch 8 x grad_accum 1 x 1 process = 8 x 256 = 2,048 tokens/step.
data_dir = "runs/speedrun/data/p3"
out_dir = "runs/speedrun/runs/p3"
init_from = "runs/speedrun/runs/p2/export"
micro_batch = 8
grad_accum = 1
max_iters = 300
lr = 2e-3
min_lr = 0.0
lr_schedule = "linear"
warmup_iters = 24
dtype = "float32"
eval_interval = 100
eval_iters = 4
ckpt_interval = 100
keep_last = 2
log_interval = 25
wandb_project = "snowcoder-cpu"
wandb_run_name = "cpu_phase3"
