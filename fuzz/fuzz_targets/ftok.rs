#![no_main]
use shm_harness::fuzzing::ftok::{run, FtokInput};
libfuzzer_sys::fuzz_target!(|input: FtokInput| run(&input));
