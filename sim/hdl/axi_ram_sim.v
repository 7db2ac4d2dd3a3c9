// Simulation-only AXI4 slave RAM (the DDR model of the engine testbench).
// INCR bursts, one beat per cycle, byte strobes. Loaded with $readmemh from +DDR_INIT=<file>
// (one DW-bit hex word per line); written back with $writememh to +DDR_DUMP=<file>
// (+DDR_DUMP_WORDS=<n> words) on the cycle `dump` is high. Keeps DDR traffic in C++,
// so a whole-model run costs no Python per beat.
// Several bursts in flight: AR and AW commands are queued (QD deep, ARREADY/AWREADY while
// the queue has room); read bursts are served in order, back to back, one beat per cycle;
// a write burst's beats are taken (WREADY) once its AW is queued, its B response queued.
// +DDR_LATENCY=<n> (default 0): a read burst whose AR handshake is at cycle a has its first
// beat at cycle a + 2 + n at the earliest; a write burst whose last W beat is at cycle w has
// its B response at cycle w + 2 + n at the earliest (responses in order, one per cycle).
// Protocol checker: proto_err goes high (sticky, with a $display) on a burst that crosses a
// 4 KB boundary (AXI4 A3.4.1), is not INCR, has a size other than the bus width or an
// address not on a beat, whose WLAST does not mark its last beat, or that makes more than
// MAX_OUT commands outstanding in one direction (a read until its last beat, a write until
// its response).
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
    output wire            awready,
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
    output wire            arready,
    output reg  [DW-1:0]   rdata,
    output wire [1:0]      rresp,
    output reg             rlast,
    output reg             rvalid,
    input  wire            rready
);
    localparam BB = DW / 8;
    localparam SH = $clog2(BB);
    localparam QD = 32;          // command queue depth
    localparam QB = 5;           // log2(QD)
    localparam MAX_OUT = 16;     // commands outstanding per direction the checker allows
    reg [DW-1:0] mem [0:WORDS-1];
    reg [63:0] now;
    // read: AR queue (address, length, earliest first-beat cycle) and the burst being sent
    reg [31:0] arq_addr [0:QD-1];
    reg [7:0]  arq_len  [0:QD-1];
    reg [63:0] arq_t    [0:QD-1];
    reg [QB-1:0] arq_h, arq_tl;
    reg [QB:0]   arq_n;
    reg [31:0] rd_addr;
    reg [7:0]  rd_left;
    reg        rd_busy;
    // write: AW queue (the head is the burst whose beats come in), B queue (earliest cycle)
    reg [31:0] awq_addr [0:QD-1];
    reg [7:0]  awq_len  [0:QD-1];
    reg [QB-1:0] awq_h, awq_tl;
    reg [QB:0]   awq_n;
    reg [63:0] bq_t [0:QD-1];
    reg [QB-1:0] bq_h, bq_tl;
    reg [QB:0]   bq_n;
    reg [31:0] wr_addr;
    reg [7:0]  wr_left;
    reg        wr_started;
    reg [1023:0] init_file, dump_file;
    integer dump_words, i, latency;
    assign bresp = 2'b00;
    assign rresp = 2'b00;
    assign arready = arq_n < QD;
    assign awready = awq_n < QD;
    assign wready = awq_n != 0;
    wire ar_hs = arvalid && arready;
    wire aw_hs = awvalid && awready;
    wire w_hs = wvalid && wready;
    wire [31:0] w_cur = wr_started ? wr_addr : awq_addr[awq_h];
    wire [7:0]  w_left = wr_started ? wr_left : awq_len[awq_h];
    wire [QB+1:0] rd_out = arq_n + rd_busy;
    wire [QB+2:0] wr_out = awq_n + bq_n + bvalid;

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
            if (ar_hs && bad_burst(araddr, arlen, arsize, arburst)) begin
                proto_err <= 1;
                $display("axi_ram_sim: AXI protocol violation: read burst addr=%h len=%0d size=%0d burst=%0d",
                         araddr, arlen, arsize, arburst);
            end
            if (aw_hs && bad_burst(awaddr, awlen, awsize, awburst)) begin
                proto_err <= 1;
                $display("axi_ram_sim: AXI protocol violation: write burst addr=%h len=%0d size=%0d burst=%0d",
                         awaddr, awlen, awsize, awburst);
            end
            if (w_hs && (wlast != (w_left == 0))) begin
                proto_err <= 1;
                $display("axi_ram_sim: AXI protocol violation: WLAST=%0d with %0d beats left", wlast, w_left);
            end
            if (ar_hs && rd_out >= MAX_OUT) begin
                proto_err <= 1;
                $display("axi_ram_sim: AXI protocol violation: more than %0d read bursts outstanding", MAX_OUT);
            end
            if (aw_hs && wr_out >= MAX_OUT) begin
                proto_err <= 1;
                $display("axi_ram_sim: AXI protocol violation: more than %0d write bursts outstanding", MAX_OUT);
            end
        end
    end

    // read side
    wire ar_pop = (!rvalid || rready) && !rd_busy && arq_n != 0 && now >= arq_t[arq_h];
    always @(posedge clk) begin
        if (rst) begin
            now <= 0; rvalid <= 0; rlast <= 0; rd_busy <= 0; arq_h <= 0; arq_tl <= 0; arq_n <= 0;
        end else begin
            now <= now + 1;
            if (ar_hs) begin
                arq_addr[arq_tl] <= araddr; arq_len[arq_tl] <= arlen; arq_t[arq_tl] <= now + 1 + latency;
                arq_tl <= arq_tl + 1;
            end
            arq_n <= arq_n + ar_hs - ar_pop;
            if (rvalid && rready) rvalid <= 0;
            if ((!rvalid || rready) && rd_busy) begin
                rdata <= mem[rd_addr[31:SH]];
                rvalid <= 1;
                rlast <= (rd_left == 0);
                rd_addr <= rd_addr + BB;
                if (rd_left == 0) rd_busy <= 0; else rd_left <= rd_left - 1;
            end else if (ar_pop) begin
                rdata <= mem[arq_addr[arq_h][31:SH]];
                rvalid <= 1;
                rlast <= (arq_len[arq_h] == 0);
                rd_addr <= arq_addr[arq_h] + BB;
                rd_left <= arq_len[arq_h] - 1;
                rd_busy <= (arq_len[arq_h] != 0);
                arq_h <= arq_h + 1;
            end
        end
    end

    // write side
    wire w_end = w_hs && (w_left == 0);
    wire b_pop = (!bvalid || bready) && bq_n != 0 && now >= bq_t[bq_h];
    always @(posedge clk) begin
        if (rst) begin
            bvalid <= 0; wr_started <= 0; awq_h <= 0; awq_tl <= 0; awq_n <= 0; bq_h <= 0; bq_tl <= 0; bq_n <= 0;
        end else begin
            if (aw_hs) begin
                awq_addr[awq_tl] <= awaddr; awq_len[awq_tl] <= awlen; awq_tl <= awq_tl + 1;
            end
            if (w_hs) begin
                for (i = 0; i < BB; i = i + 1)
                    if (wstrb[i]) mem[w_cur[31:SH]][8*i +: 8] <= wdata[8*i +: 8];
                wr_addr <= w_cur + BB;
                wr_left <= w_left - 1;
                wr_started <= !w_end;
            end
            if (w_end) begin
                awq_h <= awq_h + 1;
                bq_t[bq_tl] <= now + 1 + latency; bq_tl <= bq_tl + 1;
            end
            awq_n <= awq_n + aw_hs - w_end;
            if (bvalid && bready) bvalid <= 0;
            if (b_pop) begin
                bvalid <= 1; bq_h <= bq_h + 1;
            end
            bq_n <= bq_n + w_end - b_pop;
        end
    end
endmodule
