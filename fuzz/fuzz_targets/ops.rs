#![no_main]
use shm_harness::fuzzing::confine::confine_at_start;
use shm_harness::fuzzing::ops::{run, OpsInput};
// Confined in LLVMFuzzerInitialize, before libFuzzer starts its threads.
libfuzzer_sys::fuzz_target!(init: confine_at_start(), |input: OpsInput| run(&input));
