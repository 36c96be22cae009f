//! A real Redis Cluster for a test: redis-servers with cluster mode on, on free loopback ports,
//! joined with `redis-cli --cluster create`; every node is killed when it is dropped.

use std::process::Command;
use std::time::{Duration, Instant};

use super::redis_server::RedisServer;

/// How long the cluster may take to form (or to finish a failover).
const FORM_LIMIT: Duration = Duration::from_secs(60);

pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// A cluster of `primaries` primaries, each with `replicas` replicas.
    pub fn start(primaries: usize, replicas: usize) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..primaries * (1 + replicas))
            .map(|_| RedisServer::start_cluster_node())
            .collect();
        let cluster = RedisCluster { nodes };
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli (Debian: apt-get install -y redis-tools) to create the cluster");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        cluster.wait_until(
            "every node sees the cluster ok and its replicas in sync",
            |c| {
                c.nodes.iter().all(|node| {
                    let info = c.cli(node.port, &["CLUSTER", "INFO"]);
                    let replication = c.cli(node.port, &["INFO", "replication"]);
                    info.contains("cluster_state:ok")
                        && info.contains(&format!(
                            "cluster_known_nodes:{}",
                            primaries * (1 + replicas)
                        ))
                        && (replication.contains("role:master")
                            || replication.contains("master_link_status:up"))
                })
            },
        );
        cluster
    }

    /// `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,…`: every node.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// What `redis-cli -p port args…` prints (empty when the node does not answer).
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
            .unwrap_or_default()
    }

    /// The slot of `key`.
    pub fn slot(&self, key: &str) -> u16 {
        self.cli(self.nodes[0].port, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .expect("a slot number")
    }

    /// Every key under `pattern`, from every primary.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .nodes
            .iter()
            .filter(|node| self.cli(node.port, &["ROLE"]).starts_with("master"))
            .flat_map(|node| {
                self.cli(node.port, &["--scan", "--pattern", pattern])
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// The port of the primary serving `slot`, and the port of one of its replicas.
    pub fn primary_and_replica_of(&self, slot: u16) -> (u16, Option<u16>) {
        // CLUSTER SHARDS would be simpler, but Redis 7.0's redis-cli prints it flat: read
        // CLUSTER NODES (id address flags master-id … slot ranges).
        let nodes = self.cli(self.nodes[0].port, &["CLUSTER", "NODES"]);
        let port_of = |address: &str| -> u16 {
            address
                .split('@')
                .next()
                .and_then(|hostport| hostport.rsplit(':').next())
                .and_then(|port| port.parse().ok())
                .expect("a node address")
        };
        let mut primary: Option<(String, u16)> = None;
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (low, high) = range.split_once('-').unwrap_or((range, range));
                matches!((low.parse::<u16>(), high.parse::<u16>()), (Ok(l), Ok(h)) if l <= slot && slot <= h)
            });
            if serves {
                primary = Some((fields[0].to_owned(), port_of(fields[1])));
            }
        }
        let (id, port) = primary.expect("a primary serves every slot");
        let replica = nodes.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() > 3 && fields[2].contains("slave") && fields[3] == id)
                .then(|| port_of(fields[1]))
        });
        (port, replica)
    }

    /// Waits until `done` holds (a wait-until loop; panics naming `what` after a minute).
    pub fn wait_until(&self, what: &str, done: impl Fn(&RedisCluster) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(
                start.elapsed() < FORM_LIMIT,
                "the Redis Cluster did not reach: {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
