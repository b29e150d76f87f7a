#![no_main]
use shm_harness::fuzzing::ops::{run, OpsInput};
libfuzzer_sys::fuzz_target!(|input: OpsInput| run(&input));
