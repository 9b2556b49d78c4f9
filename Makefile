# spine: the two commands for a fresh machine.
#   make run    install what is missing, build, serve the built-in default model on :8000
#   make test   install what is missing, build (release, ASan+UBSan, fuzzers), pass every test
# Opt-in: make fuzz (long fuzz runs), make bench (side-by-side benchmarks), make format.

BUILD       ?= build
JOBS        ?= $(shell nproc)
RUN_PKGS     = build-essential cmake pkg-config libopenblas-dev libmicrohttpd-dev
TEST_PKGS    = $(RUN_PKGS) libcmocka-dev clang libclang-rt-14-dev python3-torch python3-numpy curl procps chromium clang-format
FUZZ_SECONDS ?= 15

.PHONY: all build run test deps-run deps-test test-release test-asan test-fuzz fuzz bench bench-moe bench-sls bench-serve format format-check clean

all: build

deps-run:
	@scripts/deps.sh $(RUN_PKGS)

deps-test:
	@scripts/deps.sh $(TEST_PKGS)

$(BUILD)/release/Makefile:
	cmake -S . -B $(BUILD)/release -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS_RELEASE="-O3 -g -DNDEBUG" >/dev/null

build: $(BUILD)/release/Makefile
	cmake --build $(BUILD)/release -j$(JOBS)

run: deps-run build
	$(BUILD)/release/spine serve

test: deps-test
	$(MAKE) format-check test-release test-asan test-fuzz
	@echo "make test: all suites passed"

test-release: build
	cd $(BUILD)/release && ctest --output-on-failure -j$(JOBS)

test-asan:
	cmake -S . -B $(BUILD)/asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-O1 -g" -DSPINE_SANITIZE=ON >/dev/null
	cmake --build $(BUILD)/asan -j$(JOBS)
	cd $(BUILD)/asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j$(JOBS) -LE slow

test-fuzz:
	CC=clang cmake -S . -B $(BUILD)/fuzz -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-O1 -g" -DSPINE_FUZZ=ON -DSPINE_TESTS=OFF >/dev/null
	cmake --build $(BUILD)/fuzz -j$(JOBS)
	scripts/fuzz.sh $(BUILD)/fuzz $(FUZZ_SECONDS)

fuzz: deps-test
	$(MAKE) test-fuzz FUZZ_SECONDS=600

bench: deps-test build
	bench/run.sh $(BUILD)/release

bench-moe: deps-test build
	bench/moe.sh $(BUILD)/release
	bench/moe_place.sh $(BUILD)/release

bench-sls: deps-test build
	bench/sls.sh $(BUILD)/release
	bench/sls_shapes.sh $(BUILD)/release
	bench/hot_bound.sh $(BUILD)/release

bench-serve: deps-test build
	bench/serve_overhead.sh $(BUILD)/release
	bench/serve_lbt.sh $(BUILD)/release 100
	bench/serve_lbt.sh $(BUILD)/release 400

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	@clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h') && echo "clang-format: clean"

clean:
	rm -rf $(BUILD)
