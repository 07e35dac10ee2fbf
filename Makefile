# Two entry points; each sets up .venv by itself (tools/setup_env.sh).
#   make demo   short CamVid training + evaluation, prints mIoU next to a
#               reference run's and writes two pictures to work_dirs/demo
#   make test   the whole test suite
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
CAMVID_ROOT ?= $(CURDIR)/../shared/data/camvid
CCP_ROOT ?= $(CURDIR)/../shared/data/ccp
DEMO_CONFIG ?= configs/mean_teacher/mean-teacher_deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py
DEMO_ITERS ?= 200
export VENV

.PHONY: setup demo test
setup:
	bash tools/setup_env.sh

# The data check needs only the standard library, so missing data fails in
# a second instead of after the set-up; the set-up runs next, then the demo.
demo:
	@python3 tools/demo.py --check-data --data-root $(CAMVID_ROOT)
	@$(MAKE) --no-print-directory setup
	MMSEG_SEMI_CAMVID_ROOT=$(CAMVID_ROOT) $(PY) tools/demo.py --config $(DEMO_CONFIG) --iters $(DEMO_ITERS) --data-root $(CAMVID_ROOT)

test: setup
	MMSEG_SEMI_CAMVID_ROOT=$(CAMVID_ROOT) MMSEG_SEMI_CCP_ROOT=$(CCP_ROOT) $(PY) -m pytest tests -q -p no:cacheprovider
