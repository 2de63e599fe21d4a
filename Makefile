# Thin wrapper over meson/ninja.  `make` builds into build/, `make check`
# runs every test (unit tests also under ASan+UBSan in build-asan/),
# `make demo` runs the incremental backup walkthrough.
BUILD ?= build
ASAN_BUILD ?= build-asan

.PHONY: all deps check check-unit check-asan check-iotests demo clean bench

all: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

deps:
	@./scripts/install-deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD)

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false

check: all $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)
	./scripts/run-checks.sh $(BUILD) $(ASAN_BUILD)

demo: all
	/usr/bin/python3 scripts/demo.py $(BUILD)

bench: all
	@for b in bench/*; do [ -x "$$b" ] && [ ! -d "$$b" ] && echo "== $$b" && "$$b" $(BUILD); done

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
