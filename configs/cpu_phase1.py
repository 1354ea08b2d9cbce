# Phase 1 of the one-CPU speedrun (speedrun.py): the recipe of configs/phase1.py shrunk to the
# "cpu" preset (4 layers, d 256, head dim 64) with 256-token windows, so that it trains in
# minutes on 2 cores. Same schedule shape: short linear warmup, cosine to lr/10.
#   python train.py configs/cpu_phase1.py --data_dir=D/p1/shards --out_dir=R/p1
# Batch: micro_batch 8 x grad_accum 1 x 1 process = 8 sequences x 256 tokens = 2,048 tokens/step.
data_dir = "runs/speedrun/data/p1/shards"
out_dir = "runs/speedrun/runs/p1"
model = "cpu"
model_args = {"block_size": 256}
micro_batch = 8
grad_accum = 1
max_iters = 300
lr = 2e-3                  # a small model takes a higher peak than the 1.3B's 5.3e-4
min_lr = 2e-4
warmup_iters = 20
dtype = "float32"
eval_interval = 100
eval_iters = 4
ckpt_interval = 100
keep_last = 2
log_interval = 25
wandb_project = "snowcoder-cpu"   # offline files under out_dir/wandb unless WANDB_MODE says otherwise
wandb_run_name = "cpu_phase1"
