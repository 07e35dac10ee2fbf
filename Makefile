# Two entry points; each sets up .venv by itself (tools/setup_env.sh).
#   make demo   short CamVid training + evaluation, prints mIoU
#   make test   the whole test suite
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
CAMVID_ROOT ?= $(CURDIR)/../shared/data/camvid
DEMO_CONFIG ?= configs/mean_teacher/mean-teacher_effnetlite0-d8_deeplabv3plus_1-8-camvid-demo.py
export VENV

.PHONY: setup demo test
setup:
	bash tools/setup_env.sh

demo: setup
	MMSEG_SEMI_CAMVID_ROOT=$(CAMVID_ROOT) $(PY) tools/demo.py --config $(DEMO_CONFIG)

test: setup
	MMSEG_SEMI_CAMVID_ROOT=$(CAMVID_ROOT) $(PY) -m pytest tests -q -p no:cacheprovider
