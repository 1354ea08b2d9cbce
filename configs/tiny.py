# The smallest config: what tests/test_train.py runs (2 layers, d 64, 64-token windows).
# Pass --data_dir=... and --out_dir=... on the command line.
data_dir = "data/tiny/shards"
out_dir = "runs/tiny"
model = "tiny"
model_args = {"block_size": 64}
micro_batch = 4
grad_accum = 1
max_iters = 40
lr = 3e-3
min_lr = 3e-4
warmup_iters = 5
dtype = "float32"
eval_interval = 20
eval_iters = 2
ckpt_interval = 20
keep_last = 2
wandb_log = False
wandb_run_name = "tiny"
