//! The Dataplane template renderer and validator with random templates and
//! variables: never panics, and what it accepts holds what it promises.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (String, Vec<(String, String)>)| {
    let (template, pairs) = input;
    let vars: BTreeMap<String, String> = pairs.into_iter().collect();
    match meshinit::mesh::dataplane::render(&template, &vars) {
        Ok((out, unused)) => {
            for u in &unused {
                assert!(vars.contains_key(u), "unused var {u:?} was never given");
            }
            // Without variables and braces, rendering is the identity.
            if !template.contains("{{") {
                assert_eq!(out, template);
            }
        }
        Err(errors) => assert!(!errors.is_empty()),
    }
    match meshinit::mesh::dataplane::check(&template, &vars) {
        Ok(dp) => {
            assert!(!dp.name.is_empty() && !dp.mesh.is_empty() && !dp.address.is_empty());
            let mut ports: Vec<u16> = dp.inbounds.iter().map(|i| i.port).collect();
            assert!(ports.iter().all(|p| *p != 0));
            assert!(dp
                .inbounds
                .iter()
                .all(|i| i.service_port != 0 && !i.service.is_empty()));
            ports.sort_unstable();
            ports.dedup();
            assert_eq!(
                ports.len(),
                dp.inbounds.len(),
                "duplicate inbound ports accepted"
            );
            let mut out = dp.outbound_ports.clone();
            out.sort_unstable();
            out.dedup();
            assert_eq!(
                out.len(),
                dp.outbound_ports.len(),
                "duplicate outbound ports accepted"
            );
        }
        Err(errors) => assert!(!errors.is_empty()),
    }
});
