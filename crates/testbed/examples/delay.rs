//! Runs one delay element in the foreground: `delay NETNS IF_A IF_B DELAY_MS` (for manual
//! measurements while developing; the testbed agent runs the same code in threads).

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: delay NETNS IF_A IF_B DELAY_MS");
        std::process::exit(2);
    }
    let Ok(ms) = args[4].parse::<f64>() else {
        eprintln!("DELAY_MS must be a number");
        std::process::exit(2);
    };
    let spec = ferry_testbed::delay::DelaySpec {
        netns: args[1].clone(),
        a: args[2].clone(),
        b: args[3].clone(),
        delay: std::time::Duration::from_secs_f64(ms / 1000.0),
    };
    if let Err(e) = ferry_testbed::delay::start(&spec) {
        eprintln!("delay: {e}");
        std::process::exit(1);
    }
    loop {
        std::thread::park();
    }
}
