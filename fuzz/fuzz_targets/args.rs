#![no_main]
use shm_harness::fuzzing::args::{run, ArgsInput};
libfuzzer_sys::fuzz_target!(|input: ArgsInput| run(&input));
