//! The built `dhcp_fleet` against hostile command lines: every row of the bad-input table in
//! `docs/dhcp-fleet.md`, so that the table and what the tool does cannot drift apart (the
//! table is read and run by `etherconn_testbed::cli_table`).

#![cfg(target_os = "linux")]

const BIN: &str = env!("CARGO_BIN_EXE_dhcp_fleet");

/// The documentation, read at build time so that a changed table rebuilds the test.
const DOC: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/dhcp-fleet.md"
));

#[test]
fn every_bad_input_in_the_doc_exits_2_with_its_message() {
    etherconn_testbed::cli_table::check_bad_inputs(BIN, DOC, 30);
}
