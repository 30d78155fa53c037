# Offline batch processing (tools/stylize-batch, docs/BATCH.md).
#   check-batch         tests/test_batch.py alone (also part of `make check`)
#   check-batch-remote  the chunks of a video over SSH with GNU parallel on two
#                       local sshd "hosts" (tests/test_batch_remote.py; needs
#                       root, openssh-server, openssh-client and parallel; not
#                       in `make check`) and as a Slurm job array on a one-node
#                       cluster on localhost (tests/test_batch_slurm.py; needs
#                       root, slurm-wlm and munge; also in `make check`, where
#                       it skips with its reason when it cannot start)
.PHONY: check-batch check-batch-remote

check-batch: lib tools $(if $(filter yes,$(ENABLE_FFMPEG)),ffmpeg)
	STYLIZE_BUILD=$(TOP)/$(BUILD) $(PYTHON) -m pytest -q -ra tests/test_batch.py $(PYTEST_ARGS)

check-batch-remote: lib tools $(if $(filter yes,$(ENABLE_FFMPEG)),ffmpeg)
	STYLIZE_BUILD=$(TOP)/$(BUILD) STYLIZE_REMOTE_TEST=1 $(PYTHON) -m pytest -q -ra tests/test_batch_slurm.py tests/test_batch_remote.py $(PYTEST_ARGS)
