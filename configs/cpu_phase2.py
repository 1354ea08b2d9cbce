# Phase 2 of the one-CPU speedrun: continue from phase 1's export (architecture included) on the
# annotator's top-scored files (repeated 4x through the manifest's epochs), fresh optimizer,
# re-warm then linear to 0 (the shape of configs/phase2.py: 1000 of 11,921 steps warmup there, 8% here).
#   python train.py configs/cpu_phase2.py --data_dir=D/p2 --init_from=R/p1/export --out_dir=R/p2
# Batch: micro_batch 8 x grad_accum 1 x 1 process = 8 x 256 = 2,048 tokens/step.
data_dir = "runs/speedrun/data/p2"
out_dir = "runs/speedrun/runs/p2"
init_from = "runs/speedrun/runs/p1/export"
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
wandb_run_name = "cpu_phase2"
