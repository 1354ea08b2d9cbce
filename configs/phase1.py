# Phase 1, general pretraining (arXiv 2409.02326; ../shared/DESIGN.md §1): the 1.3B model on the
# raw code corpus after filtering, dedup and decontamination; 500B tokens.
#
#   torchrun --nproc_per_node=8 train.py configs/phase1.py
#
# Batch: 512 sequences x 8192 tokens = 4,194,304 tokens per step, as
#   micro_batch 2 x grad_accum 32 x 8 GPUs = 512 sequences.
# (2 x 8192 tokens per micro-step: by our estimate ~30 GB of bf16 activations plus the fp32 logits,
#  so it should fit an 80 GB H100 without activation checkpointing; not yet measured on one;
#  on N GPUs use grad_accum = 256 / N to keep the paper's batch.)
# Steps: 500e9 / 4,194,304 = 119,209.3 -> 119,209.
# Schedule: linear warmup over 600 steps to 5.3e-4, cosine decay to 5.3e-5 at the last step.
# AdamW betas (0.9, 0.95), weight decay 0.1, grad clip 1.0, bf16 compute with fp32 master
# weights and fp32 gradient reduction (DeepSeek-Coder's values, the source of the paper's lr).
data_dir = "data/p1/shards"
out_dir = "runs/phase1"
model = "snowcoder-1.3b"
micro_batch = 2
grad_accum = 32
max_iters = round(500e9 / (512 * 8192))  # 119_209
lr = 5.3e-4
min_lr = 5.3e-5
lr_schedule = "cosine"
warmup_iters = 600
betas = (0.9, 0.95)
weight_decay = 0.1
grad_clip = 1.0
dtype = "bfloat16"
compile = False
activation_checkpointing = False
eval_interval = 500        # ~every 2.1B tokens
eval_iters = 2             # 2 x 512 val sequences = 8.4M tokens
ckpt_interval = 500
keep_last = 3
wandb_log = True
wandb_project = "snowcoder"
wandb_run_name = "phase1"
