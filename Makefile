# minik8s: `make run` starts a single-node cluster, `make test` runs the whole suite.
# Both install what is missing first (Debian 12, as root).

VENV   := .venv
PY     := $(VENV)/bin/python
DEBS   := etcd-server docker.io iptables nftables ipvsadm iproute2 conntrack busybox-static wrk python3-venv \
          docker-compose debootstrap systemd
DATA_DIR ?=

.PHONY: install deps venv run test images clean bench dockerd

install: deps venv

deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	@touch $@

venv: $(VENV)/.installed

dockerd: deps
	@bash deploy/ensure-dockerd.sh

images: deps dockerd
	bash deploy/images/build.sh

run: install dockerd images
	$(VENV)/bin/minik8s up $(if $(DATA_DIR),--data-dir $(DATA_DIR))

test: install dockerd images
	$(PY) -m pytest -q -p no:cacheprovider tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

bench: install
	$(PY) bench/apiserver.py

clean:
	rm -rf $(VENV) *.egg-info
