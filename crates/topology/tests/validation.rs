//! Malformed topology files are rejected with the line and the field; the shipped example
//! parses.

use ferry_topology::{Topology, TopologyError};

const EXAMPLE: &str = include_str!("../../../examples/three-hosts.toml");

/// Replaces the first occurrence of `from` in the example (which must exist).
fn edit(from: &str, to: &str) -> String {
    assert!(EXAMPLE.contains(from), "example lacks {from:?}");
    EXAMPLE.replacen(from, to, 1)
}

/// 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text.find(needle).expect("needle present");
    text[..at].matches('\n').count() + 1
}

fn rejects(text: &str) -> String {
    match Topology::parse(text) {
        Ok(_) => panic!("accepted a malformed file"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn example_parses() {
    let t = Topology::parse(EXAMPLE).expect("example is valid");
    assert_eq!(t.name, "three");
    assert_eq!(t.hosts.len(), 3);
    assert_eq!(t.cells.len(), 3);
    assert_eq!(t.ues[0].waypoints.len(), 4);
    let radio = t.radio.as_ref().expect("the example runs the radio model");
    assert_eq!(radio.time_to_trigger_ms, 320);
    assert_eq!(t.cells[0].tx_power_dbm, 43.0, "default power");
    assert_eq!(t.link("mec2", "mec1").and_then(|l| l.delay_ms), Some(5.0));
}

#[test]
fn bad_address_names_line_and_field() {
    let text = edit("address = \"10.100.0.12\"", "address = \"10.100.0.300\"");
    let err = Topology::parse(&text).unwrap_err();
    let line = line_of(&text, "10.100.0.300");
    assert_eq!(err.line(), Some(line));
    let msg = err.to_string();
    assert!(msg.contains(&format!("line {line}")), "{msg}");
    assert!(msg.contains("hosts[1].address"), "{msg}");
}

#[test]
fn unknown_cell_host_is_rejected() {
    let text = edit("host = \"mec2\"", "host = \"mec9\"");
    let msg = rejects(&text);
    assert!(
        msg.contains(&format!("line {}", line_of(&text, "mec9"))),
        "{msg}"
    );
    assert!(
        msg.contains("cells[1].host") && msg.contains("mec9"),
        "{msg}"
    );
}

#[test]
fn unknown_trace_cell_is_rejected() {
    // The example's UE walks: give it a trace instead (a UE with both is refused for that).
    let start = EXAMPLE.find("waypoints = [\n").expect("the UE's waypoints");
    let end = start + EXAMPLE[start..].find("]\n").unwrap() + 2;
    let text = format!(
        "{}trace = [{{ at_s = 20.0, cell = \"cell2\" }}, {{ at_s = 40.0, cell = \"cell7\" }}]\n{}",
        &EXAMPLE[..start],
        &EXAMPLE[end..]
    );
    let msg = rejects(&text);
    assert!(
        msg.contains(&format!("line {}", line_of(&text, "cell7"))),
        "{msg}"
    );
    assert!(msg.contains("ues[0].trace[1].cell"), "{msg}");
}

#[test]
fn radio_values_out_of_range_are_rejected() {
    let msg = rejects(&edit(
        "time_to_trigger_ms = 320",
        "time_to_trigger_ms = 100000",
    ));
    assert!(msg.contains("radio.time_to_trigger_ms"), "{msg}");
    let msg = rejects(&edit(
        "path_loss_exponent = 3.5",
        "path_loss_exponent = 0.5",
    ));
    assert!(msg.contains("radio.path_loss_exponent"), "{msg}");
    let msg = rejects(&edit(
        "radius_m = 600.0",
        "radius_m = 600.0\ntx_power_dbm = 500.0",
    ));
    assert!(msg.contains("cells[0].tx_power_dbm"), "{msg}");
    let msg = rejects(&edit("[radio]", "[radio]\nbogus = 1"));
    assert!(msg.contains("bogus"), "{msg}");
}

#[test]
fn duplicate_names_are_rejected() {
    let text = edit("name = \"mec3\"", "name = \"mec1\"");
    let msg = rejects(&text);
    let second = text.match_indices("name = \"mec1\"").nth(1).unwrap().0;
    let line = text[..second].matches('\n').count() + 1;
    assert!(
        msg.contains(&format!("line {line}")) && msg.contains("duplicate"),
        "{msg}"
    );
}

#[test]
fn overlapping_addresses_are_rejected() {
    // A host address inside the app subnet.
    let text = edit("address = \"10.100.0.13\"", "address = \"10.200.0.9\"");
    let msg = rejects(&text);
    assert!(
        msg.contains("hosts[2].address") && msg.contains("app_subnet"),
        "{msg}"
    );
    // Two subnets that overlap.
    let text = edit(
        "link_subnet = \"10.201.0.0/16\"",
        "link_subnet = \"10.200.128.0/17\"",
    );
    let msg = rejects(&text);
    assert!(
        msg.contains(&format!("line {}", line_of(&text, "link_subnet ="))),
        "{msg}"
    );
    // The same address twice.
    let text = edit("address = \"10.150.0.1\"", "address = \"10.100.0.11\"");
    assert!(rejects(&text).contains("already the address of hosts[0]"));
}

#[test]
fn names_too_long_for_interfaces_are_rejected() {
    let text = edit("name = \"three\"", "name = \"averylongname\"");
    let msg = rejects(&text);
    assert!(
        msg.contains("line ") && msg.contains("`name`") && msg.contains("at most 10"),
        "{msg}"
    );
    let text = edit("name = \"cell2\"", "name = \"cell-two-long-x\"");
    let msg = rejects(&text);
    assert!(
        msg.contains("cells[1].name") && msg.contains("at most 12"),
        "{msg}"
    );
}

#[test]
fn syntax_and_type_errors_name_line_and_field() {
    // A number where a string is expected.
    let text = edit("address = \"10.100.0.12\"", "address = 5");
    let msg = rejects(&text);
    let line = line_of(&text, "address = 5");
    assert!(
        msg.starts_with(&format!("line {line}: field `hosts[1].address`")),
        "{msg}"
    );
    // An unknown key.
    let text = edit(
        "radius_m = 600.0\nhost = \"mec2\"",
        "radius = 600.0\nhost = \"mec2\"",
    );
    let msg = rejects(&text);
    assert!(
        msg.contains(&format!("line {}", line_of(&text, "radius = 600"))),
        "{msg}"
    );
    assert!(msg.contains("radius"), "{msg}");
    // Broken syntax.
    let text = edit("delay_ms = 1.0", "delay_ms = = 1.0");
    let msg = rejects(&text);
    assert!(
        msg.contains(&format!("line {}", line_of(&text, "= = 1.0"))),
        "{msg}"
    );
    assert!(matches!(
        Topology::parse(&text),
        Err(TopologyError::Parse(_))
    ));
}

#[test]
fn links_must_join_known_nodes_and_cells_their_host() {
    let text = edit("a = \"cell2\"\nb = \"mec2\"", "a = \"cell2\"\nb = \"mec3\"");
    let msg = rejects(&text);
    assert!(msg.contains("served by 'mec2'"), "{msg}");
    let text = edit(
        "a = \"mec2\"\nb = \"mec3\"",
        "a = \"mec2\"\nb = \"nowhere\"",
    );
    let msg = rejects(&text);
    assert!(
        msg.contains(&format!("line {}", line_of(&text, "nowhere"))) && msg.contains("links[1].b"),
        "{msg}"
    );
    let text = edit("delay_ms = 20.0", "delay_ms = -3.0");
    assert!(rejects(&text).contains("links[2].delay_ms"));
}

#[test]
fn a_missing_field_is_named() {
    let text = edit("address = \"10.150.0.1\"\n", "");
    let msg = rejects(&text);
    assert!(msg.contains("address") && msg.contains("line "), "{msg}");
}

#[test]
fn every_shipped_example_parses() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("examples dir") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "toml") {
            Topology::from_file(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 2, "expected the shipped examples in {}", dir.display());
}

#[test]
fn reserved_and_malformed_topology_names_are_refused() {
    assert!(ferry_topology::topology_name_problem("ferry").is_err());
    assert!(ferry_topology::topology_name_problem("a-b").is_err());
    assert!(ferry_topology::topology_name_problem("../x").is_err());
    assert!(ferry_topology::topology_name_problem("three").is_ok());
}

const CELL1_ECGI: &str = "ecgi = { mcc = \"001\", mnc = \"01\", cell_id = \"0000001\" }";
const NR_CELL: &str = "\n[[cells]]\nname = \"nr1\"\nrat = \"NR\"\n\
    nrcgi = { mcc = \"001\", mnc = \"01\", nrcell_id = \"000000101\" }\n\
    position = { latitude = 43.7300, longitude = 7.4200 }\nhost = \"mec1\"\n";

#[test]
fn nr_cells_and_secondary_carriers_parse() {
    let text = format!(
        "{}{NR_CELL}",
        edit(
            CELL1_ECGI,
            &format!("{CELL1_ECGI}\nsecondary_carriers = [{{ cell_id = \"0000011\", frequency_mhz = 2600 }}]"),
        )
    );
    let t = Topology::parse(&text).expect("valid");
    let nr = t.cell("nr1").unwrap();
    assert_eq!(nr.rat, ferry_topology::Rat::Nr);
    assert_eq!(nr.nrcgi.as_ref().unwrap().nrcell_id, "000000101");
    assert!(nr.ecgi.is_none());
    assert_eq!(t.cells[0].rat, ferry_topology::Rat::Lte, "LTE by default");
    let sc = &t.cells[0].secondary_carriers[0];
    assert_eq!(
        (sc.cell_id.as_str(), sc.frequency_mhz, sc.tx_power_dbm),
        ("0000011", 2600.0, 43.0)
    );
}

#[test]
fn nr_cells_need_an_nrcgi_the_radio_model_and_serve_no_ue() {
    let with_nr = format!("{EXAMPLE}{NR_CELL}");
    // Drop the [radio] table (its keys up to the next table).
    let start = with_nr.find("\n[radio]\n").unwrap();
    let end = start + 1 + with_nr[start + 1..].find("\n[").unwrap();
    let no_radio = format!("{}{}", &with_nr[..start], &with_nr[end..]);
    let msg = rejects(&no_radio);
    assert!(msg.contains("[radio]") && msg.contains("rat"), "{msg}");
    let msg = rejects(&with_nr.replace("nrcell_id = \"000000101\"", "nrcell_id = \"1000000000\""));
    assert!(msg.contains("36-bit"), "{msg}");
    let msg = rejects(&with_nr.replace("rat = \"NR\"", "rat = \"LTE\""));
    assert!(msg.contains("cells[3].ecgi"), "{msg}");
    let msg = rejects(&with_nr.replace("rat = \"NR\"", "rat = \"5G\""));
    assert!(msg.contains("rat"), "{msg}");
    let msg = rejects(&format!(
        "{}{NR_CELL}",
        edit(CELL1_ECGI, &format!("{CELL1_ECGI}\nrat = \"NR\""))
    ));
    assert!(msg.contains("cells[0].nrcgi"), "{msg}");
    let first_ue_cell = EXAMPLE[EXAMPLE.find("[[ues]]").unwrap()..]
        .lines()
        .find(|l| l.starts_with("cell = "))
        .unwrap()
        .to_string();
    let msg = rejects(&with_nr.replacen(&first_ue_cell, "cell = \"nr1\"", 1));
    assert!(
        msg.contains("NR cell") && msg.contains("ues[0].cell"),
        "{msg}"
    );
}

#[test]
fn secondary_carriers_are_checked() {
    let with = |carrier: &str| {
        edit(
            CELL1_ECGI,
            &format!("{CELL1_ECGI}\nsecondary_carriers = [{carrier}]"),
        )
    };
    let msg = rejects(&with("{ cell_id = \"10000000\", frequency_mhz = 2600 }"));
    assert!(msg.contains("secondary_carriers[0].cell_id"), "{msg}");
    let msg = rejects(&with("{ cell_id = \"11\", frequency_mhz = 20 }"));
    assert!(msg.contains("frequency_mhz"), "{msg}");
    let msg = rejects(&with("{ cell_id = \"11\" }"));
    assert!(msg.contains("frequency_mhz"), "{msg}");
}
