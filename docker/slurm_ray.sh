#!/usr/bin/env bash
# A Ray cluster on a SLURM allocation, then `spin train` on it: the first node is the Ray head
# (the fits store writer and rank 0 live there, on its local disk), every node runs a Ray worker.
#
#   sbatch --nodes=2 --gpus-per-node=4 --cpus-per-task=32 docker/slurm_ray.sh configs/cluster.yaml
#
# One task per node; Ray schedules the trainer ranks (one per GPU) and the fitting actors itself.
#SBATCH --job-name=spin-train
#SBATCH --ntasks-per-node=1
#SBATCH --exclusive
set -euo pipefail

CONFIG=${1:-configs/cluster.yaml}
shift || true
PORT=${RAY_PORT:-6379}
nodes=$(scontrol show hostnames "$SLURM_JOB_NODELIST")
head_node=$(echo "$nodes" | head -n 1)
head_ip=$(srun --nodes=1 --ntasks=1 -w "$head_node" hostname --ip-address | awk '{print $1}')
address="$head_ip:$PORT"
cpus=${SLURM_CPUS_PER_TASK:-$(nproc)}
gpus=${SLURM_GPUS_ON_NODE:-0}

# --block keeps each `ray start` in the foreground of its srun step; the steps end with the job.
srun --nodes=1 --ntasks=1 -w "$head_node" \
    ray start --head --node-ip-address="$head_ip" --port="$PORT" --include-dashboard=false \
    --num-cpus="$cpus" --num-gpus="$gpus" --block &
until ray health-check --address "$address" >/dev/null 2>&1; do sleep 2; done

for node in $(echo "$nodes" | tail -n +2); do
    srun --nodes=1 --ntasks=1 -w "$node" \
        ray start --address="$address" --num-cpus="$cpus" --num-gpus="$gpus" --block &
done
sleep 10  # workers register with the head

# The driver runs on the head node (this batch script's node), joins the cluster and launches
# distributed.num_workers ranks through Ray Train.
spin train --config "$CONFIG" fitting.ray_address="$address" "$@"
status=$?
ray stop --address "$address" >/dev/null 2>&1 || true  # this job's cluster only
wait
exit $status
