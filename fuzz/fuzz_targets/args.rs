#![no_main]
use shm_harness::fuzzing::args::{run, ArgsInput};
use shm_harness::fuzzing::confine::confine_at_start;
// Confined in LLVMFuzzerInitialize, before libFuzzer starts its threads.
libfuzzer_sys::fuzz_target!(init: confine_at_start(), |input: ArgsInput| run(&input));
