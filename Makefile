# Developer entry points. The two README commands are `make example` and `make test`.
PYTHON ?= python3
CC ?= cc
BUILD ?= build/c
MSGPACK_PC := $(shell pkg-config --exists msgpack-c 2>/dev/null && echo msgpack-c || echo msgpack)
PKG_CFLAGS := $(shell pkg-config --cflags $(MSGPACK_PC) libcrypto 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(MSGPACK_PC) libcrypto 2>/dev/null)
PY_EMBED_CFLAGS := $(shell $(PYTHON)-config --includes 2>/dev/null)
PY_EMBED_LIBS := $(shell $(PYTHON)-config --embed --ldflags 2>/dev/null) \
	-Wl,-rpath,$(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CORE_WARN := $(WARN) -Wconversion -Wsign-conversion
CFLAGS ?= -O2 -g
SAN ?=
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(CFLAGS) $(SAN) -Icsrc/core $(PKG_CFLAGS)

CORE_SRC := $(wildcard csrc/core/*.c)
CORE_OBJ := $(patsubst csrc/core/%.c,$(BUILD)/core/%.o,$(CORE_SRC))
CTEST_SRC := $(wildcard tests/c/test_*.c)
CTEST_BIN := $(patsubst tests/c/%.c,$(BUILD)/tests/%,$(CTEST_SRC))

.PHONY: all ctest executables example test clean deps

all: executables

$(BUILD)/core/%.o: csrc/core/%.c csrc/core/mdcore.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CORE_WARN) -c $< -o $@

$(BUILD)/libmdcore.a: $(CORE_OBJ)
	ar rcs $@ $^

$(BUILD)/tests/%: tests/c/%.c tests/c/harness.h $(BUILD)/libmdcore.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(WARN) -Itests/c $< $(BUILD)/libmdcore.a $(PKG_LIBS) -o $@

# CTEST_RUNNER: a command to run each test under, e.g. valgrind (scripts/test-sanitized).
CTEST_RUNNER ?=
ctest: $(CTEST_BIN)
	@set -e; for t in $(CTEST_BIN); do echo "== $$t"; $(CTEST_RUNNER) $$t; done

$(BUILD)/mapdeploy-supervisor: $(wildcard csrc/supervisor/*.c) $(BUILD)/libmdcore.a
	$(CC) $(ALL_CFLAGS) $(WARN) -pthread $(wildcard csrc/supervisor/*.c) $(BUILD)/libmdcore.a $(PKG_LIBS) -o $@

$(BUILD)/mapdeploy-worker: $(wildcard csrc/worker/*.c csrc/worker/*.h csrc/pyshared/*) $(BUILD)/libmdcore.a
	$(CC) $(ALL_CFLAGS) $(WARN) $(PY_EMBED_CFLAGS) -Icsrc/pyshared $(wildcard csrc/worker/*.c csrc/pyshared/*.c) $(BUILD)/libmdcore.a $(PKG_LIBS) $(PY_EMBED_LIBS) -o $@

executables: $(BUILD)/mapdeploy-supervisor $(BUILD)/mapdeploy-worker

example:
	./scripts/example

test:
	./scripts/test

clean:
	rm -rf build

# ------------------------------------------------------------------ fuzzing
# `make fuzz` builds a libFuzzer binary per decoder and runs each for
# FUZZ_SECONDS.  New inputs go to $(FUZZ_BUILD)/corpus/<target> (scratch);
# the committed seeds in tests/fuzz/corpus/<target> are only read.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 15
FUZZ_BUILD ?= build/fuzz
FUZZ_SAN := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_TARGETS := envelope frame records log ready pool cursor oob
FUZZ_BIN := $(patsubst %,$(FUZZ_BUILD)/fuzz_%,$(FUZZ_TARGETS))
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -O1 -g -Icsrc/core $(PKG_CFLAGS)

.PHONY: fuzz fuzz-build fuzz-corpus

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(CORE_SRC) $(wildcard csrc/core/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) $(CORE_WARN) $< $(CORE_SRC) $(PKG_LIBS) -o $@

$(FUZZ_BUILD)/make_corpus: tests/fuzz/make_corpus.c $(BUILD)/libmdcore.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(WARN) $< $(BUILD)/libmdcore.a $(PKG_LIBS) -o $@

# The READY decoder lives in the supervisor (only it reads READY payloads).
$(FUZZ_BUILD)/fuzz_ready: tests/fuzz/fuzz_ready.c csrc/supervisor/ready.c csrc/supervisor/supervisor.h $(CORE_SRC) $(wildcard csrc/core/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Icsrc/supervisor $(FUZZ_SAN) $(CORE_WARN) $< csrc/supervisor/ready.c $(CORE_SRC) $(PKG_LIBS) -o $@

# Regenerates the committed seed corpus (run after a format change).
fuzz-corpus: $(FUZZ_BUILD)/make_corpus
	$(FUZZ_BUILD)/make_corpus tests/fuzz/corpus

fuzz-build: $(FUZZ_BIN)

fuzz: $(FUZZ_BIN)
	@set -e; for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/artifacts; \
		echo "== fuzz_$$t for $(FUZZ_SECONDS) s"; \
		$(FUZZ_BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			-artifact_prefix=$(FUZZ_BUILD)/artifacts/fuzz_$$t- \
			$(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t; \
	done

# The core's internal header (not part of the mdcore.h API).
$(CORE_OBJ): csrc/core/msgpack_util.h
