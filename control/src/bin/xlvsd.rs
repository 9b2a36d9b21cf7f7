fn main(){ println!("{}", xlvs_control::XDP_OBJECT.len()); }
