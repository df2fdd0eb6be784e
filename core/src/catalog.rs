//! Well-known host and VM types: CloudSim's PlanetLab consolidation scenario
//! (Beloglazov & Buyya, CCPE 2012), so that every part of Keel builds the same data centre.

use crate::inventory::{HostSpec, PowerModel, VmSpec};

/// SPECpower watts at 0..100 % for the HP ProLiant ML110 G4 (Xeon 3040, 2 × 1860 MIPS).
pub const G4_WATTS: [f64; 11] = [
    86.0, 89.4, 92.6, 96.0, 99.5, 102.0, 106.0, 108.0, 112.0, 114.0, 117.0,
];
/// SPECpower watts at 0..100 % for the HP ProLiant ML110 G5 (Xeon 3075, 2 × 2660 MIPS).
pub const G5_WATTS: [f64; 11] = [
    93.7, 97.0, 101.0, 105.0, 110.0, 116.0, 121.0, 125.0, 129.0, 133.0, 135.0,
];

/// Host memory in CloudSim's scenario, MB.
pub const CLOUDSIM_HOST_RAM_MIB: f64 = 4096.0;
/// Host bandwidth in CloudSim's scenario, Mbit/s (1 Gbit/s).
pub const CLOUDSIM_HOST_BW_MBIT: f64 = 1000.0;

/// An HP ProLiant ML110 G4 (`id` unset).
pub fn hp_proliant_g4() -> HostSpec {
    HostSpec {
        id: String::new(),
        cores: 2,
        cpu_per_core: 1860.0,
        mem_mib: CLOUDSIM_HOST_RAM_MIB,
        bandwidth_mbit: Some(CLOUDSIM_HOST_BW_MBIT),
        power: Some(PowerModel { watts: G4_WATTS }),
        host_type: Some("hp-proliant-ml110-g4".into()),
    }
}

/// An HP ProLiant ML110 G5 with the given id.
pub fn hp_proliant_g5(id: String) -> HostSpec {
    HostSpec {
        id,
        cores: 2,
        cpu_per_core: 2660.0,
        mem_mib: CLOUDSIM_HOST_RAM_MIB,
        bandwidth_mbit: Some(CLOUDSIM_HOST_BW_MBIT),
        power: Some(PowerModel { watts: G5_WATTS }),
        host_type: Some("hp-proliant-ml110-g5".into()),
    }
}

/// CloudSim's data centre of `n` hosts: even index G4, odd index G5, ids `host-0000`….
pub fn cloudsim_hosts(n: usize) -> Vec<HostSpec> {
    (0..n)
        .map(|i| {
            let id = format!("host-{i:04}");
            if i % 2 == 0 {
                HostSpec {
                    id,
                    ..hp_proliant_g4()
                }
            } else {
                hp_proliant_g5(id)
            }
        })
        .collect()
}

/// One of CloudSim's four VM types.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VmType {
    /// Type name.
    pub name: &'static str,
    /// MIPS of its single vCPU.
    pub mips: f64,
    /// RAM, MB.
    pub ram_mib: f64,
}

impl VmType {
    /// A [`VmSpec`] of this type with the given id.
    pub fn spec(&self, id: String) -> VmSpec {
        VmSpec {
            id,
            vcpus: 1,
            cpu_per_vcpu: self.mips,
            mem_mib: self.ram_mib,
            vm_type: Some(self.name.to_string()),
        }
    }
}

/// CloudSim's VM types: MIPS {2500, 2000, 1000, 500}, RAM {870, 1740, 1740, 613} MB.
pub const CLOUDSIM_VM_TYPES: [VmType; 4] = [
    VmType {
        name: "cloudsim-high-cpu",
        mips: 2500.0,
        ram_mib: 870.0,
    },
    VmType {
        name: "cloudsim-extra-large",
        mips: 2000.0,
        ram_mib: 1740.0,
    },
    VmType {
        name: "cloudsim-small",
        mips: 1000.0,
        ram_mib: 1740.0,
    },
    VmType {
        name: "cloudsim-micro",
        mips: 500.0,
        ram_mib: 613.0,
    },
];

/// CloudSim's VM type by index (0..4).
///
/// # Panics
/// If `i >= 4`.
pub fn cloudsim_vm_type(i: usize) -> VmType {
    CLOUDSIM_VM_TYPES[i]
}

/// The type CloudSim gives VM `i` of `n`: equal consecutive blocks, `⌊i / ⌈n/4⌉⌋`.
pub fn cloudsim_vm_type_for(i: usize, n: usize) -> VmType {
    let block = n.div_ceil(4).max(1);
    CLOUDSIM_VM_TYPES[(i / block).min(3)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_alternate_g4_g5() {
        let h = cloudsim_hosts(4);
        assert_eq!(h[0].cpu_capacity(), 3720.0);
        assert_eq!(h[1].cpu_capacity(), 5320.0);
        assert_eq!(h[2].host_type.as_deref(), Some("hp-proliant-ml110-g4"));
        assert_eq!(h[3].id, "host-0003");
    }

    #[test]
    fn vm_types_in_equal_blocks() {
        // 1052 VMs: blocks of 263.
        assert_eq!(cloudsim_vm_type_for(0, 1052).mips, 2500.0);
        assert_eq!(cloudsim_vm_type_for(262, 1052).mips, 2500.0);
        assert_eq!(cloudsim_vm_type_for(263, 1052).mips, 2000.0);
        assert_eq!(cloudsim_vm_type_for(1051, 1052).mips, 500.0);
        assert_eq!(cloudsim_vm_type_for(2, 3).mips, 1000.0);
    }
}
