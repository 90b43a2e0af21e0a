//! The Envoy stats reader (`envoy::inbound_load`): the text Envoy's admin
//! API answers during an idle-watched drain. Any text must give a load or an
//! error, never a panic (counters from another process can be anything).

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use meshinit::mesh::envoy::{inbound_load, InboundListener};

#[derive(Arbitrary, Debug)]
struct Input {
    stats: String,
    listeners: Vec<(String, u16, u16)>,
}

fuzz_target!(|input: Input| {
    let listeners: Vec<InboundListener> = input
        .listeners
        .into_iter()
        .take(8)
        .map(|(address, port, service_port)| InboundListener {
            address,
            port,
            service_port,
        })
        .collect();
    if let Ok(load) = inbound_load(&input.stats, &listeners) {
        // Counts come from the stats: with no listener there is nothing to count.
        if listeners.is_empty() {
            assert!(load.is_idle());
        }
    }
    // The stats of a realistic inbound, with the fuzzed text appended, must
    // find the listener (extra lines never hide one).
    let l = InboundListener {
        address: "127.0.0.1".into(),
        port: 28012,
        service_port: 28011,
    };
    let stats = format!(
        "listener.127.0.0.1_28012.downstream_cx_active: 1\n{}",
        input.stats
    );
    let load = inbound_load(&stats, &[l]).expect("the listener is in the stats");
    assert!(load.connections >= 1);
});
