// Simulation-only AXI4 slave RAM (the DDR model of the engine testbench).
// INCR bursts, one beat per cycle, byte strobes. Loaded with $readmemh from +DDR_INIT=<file>
// (one DW-bit hex word per line); written back with $writememh to +DDR_DUMP=<file>
// (+DDR_DUMP_WORDS=<n> words) on the cycle `dump` is high. Keeps DDR traffic in C++,
// so a whole-model run costs no Python per beat.
// +DDR_LATENCY=<n>: a read burst's first beat comes n cycles later than with 0, a write
// burst's response n cycles after its last beat (default 0).
// Protocol checker: proto_err goes high (sticky, with a $display) on a burst that crosses a
// 4 KB boundary (AXI4 A3.4.1), is not INCR, has a size other than the bus width or an
// address not on a beat, or whose WLAST does not mark its last beat.
module axi_ram_sim #(parameter DW = 64, parameter WORDS = 262144) (
    input  wire            clk,
    input  wire            rst,
    input  wire            dump,
    output reg             proto_err,
    input  wire [31:0]     awaddr,
    input  wire [7:0]      awlen,
    input  wire [2:0]      awsize,
    input  wire [1:0]      awburst,
    input  wire            awvalid,
    output reg             awready,
    input  wire [DW-1:0]   wdata,
    input  wire [DW/8-1:0] wstrb,
    input  wire            wlast,
    input  wire            wvalid,
    output wire            wready,
    output wire [1:0]      bresp,
    output reg             bvalid,
    input  wire            bready,
    input  wire [31:0]     araddr,
    input  wire [7:0]      arlen,
    input  wire [2:0]      arsize,
    input  wire [1:0]      arburst,
    input  wire            arvalid,
    output reg             arready,
    output reg  [DW-1:0]   rdata,
    output wire [1:0]      rresp,
    output reg             rlast,
    output reg             rvalid,
    input  wire            rready
);
    localparam BB = DW / 8;
    localparam SH = $clog2(BB);
    reg [DW-1:0] mem [0:WORDS-1];
    reg [31:0] rd_addr, wr_addr;
    reg [7:0]  rd_left, wr_left;
    reg        rd_busy, wr_busy;
    reg [15:0] rd_wait, b_wait;
    reg [1023:0] init_file, dump_file;
    integer dump_words, i, latency;
    assign bresp = 2'b00;
    assign rresp = 2'b00;
    assign wready = wr_busy;

    initial begin
        if ($value$plusargs("DDR_INIT=%s", init_file)) $readmemh(init_file, mem);
        if (!$value$plusargs("DDR_DUMP_WORDS=%d", dump_words)) dump_words = WORDS;
        if (!$value$plusargs("DDR_LATENCY=%d", latency)) latency = 0;
    end

    // 1 when a burst of len+1 beats at addr breaks a rule above
    function automatic bad_burst(input [31:0] addr, input [7:0] len, input [2:0] size, input [1:0] burst);
        bad_burst = ({20'd0, addr[11:0]} + ((len + 32'd1) << SH) > 32'd4096) || burst != 2'd1
                    || size != SH || (addr & (BB - 1)) != 0;
    endfunction

    always @(posedge clk) begin
        if (dump && $value$plusargs("DDR_DUMP=%s", dump_file))
            $writememh(dump_file, mem, 0, dump_words - 1);
    end

    always @(posedge clk) begin
        if (rst) begin
            proto_err <= 0;
        end else begin
            if (arvalid && arready && bad_burst(araddr, arlen, arsize, arburst)) begin
                proto_err <= 1;
                $display("axi_ram_sim: AXI protocol violation: read burst addr=%h len=%0d size=%0d burst=%0d",
                         araddr, arlen, arsize, arburst);
            end
            if (awvalid && awready && bad_burst(awaddr, awlen, awsize, awburst)) begin
                proto_err <= 1;
                $display("axi_ram_sim: AXI protocol violation: write burst addr=%h len=%0d size=%0d burst=%0d",
                         awaddr, awlen, awsize, awburst);
            end
            if (wvalid && wr_busy && (wlast != (wr_left == 0))) begin
                proto_err <= 1;
                $display("axi_ram_sim: AXI protocol violation: WLAST=%0d with %0d beats left", wlast, wr_left);
            end
        end
    end

    always @(posedge clk) begin
        if (rst) begin
            arready <= 0; rvalid <= 0; rlast <= 0; rd_busy <= 0; rd_wait <= 0;
        end else begin
            arready <= 0;
            if (!rd_busy && arvalid && !arready) begin
                arready <= 1; rd_addr <= araddr; rd_left <= arlen; rd_busy <= 1; rd_wait <= latency;
            end
            if (rd_busy && rd_wait != 0) begin
                rd_wait <= rd_wait - 1;
            end else if (rd_busy && (!rvalid || rready)) begin
                rdata <= mem[rd_addr[31:SH]];
                rvalid <= 1;
                rlast <= (rd_left == 0);
                rd_addr <= rd_addr + BB;
                if (rd_left == 0) rd_busy <= 0; else rd_left <= rd_left - 1;
            end else if (rvalid && rready) begin
                rvalid <= 0;
            end
        end
    end

    always @(posedge clk) begin
        if (rst) begin
            awready <= 0; bvalid <= 0; wr_busy <= 0; b_wait <= 0;
        end else begin
            awready <= 0;
            if (!wr_busy && !bvalid && b_wait == 0 && awvalid && !awready) begin
                awready <= 1; wr_addr <= awaddr; wr_left <= awlen; wr_busy <= 1;
            end
            if (wvalid && wr_busy) begin
                for (i = 0; i < BB; i = i + 1)
                    if (wstrb[i]) mem[wr_addr[31:SH]][8*i +: 8] <= wdata[8*i +: 8];
                wr_addr <= wr_addr + BB;
                wr_left <= wr_left - 1;
                if (wlast) begin
                    wr_busy <= 0;
                    if (latency == 0) bvalid <= 1; else b_wait <= latency;
                end
            end
            if (b_wait != 0) begin
                b_wait <= b_wait - 1;
                if (b_wait == 1) bvalid <= 1;
            end
            if (bvalid && bready) bvalid <= 0;
        end
    end
endmodule
