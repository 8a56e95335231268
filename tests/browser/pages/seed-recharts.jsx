// The seed's Recharts example (SEED.md, "Recharts 示例"), as written, plus the one
// allowed addition: width/height on <LineChart> (Recharts 2 draws nothing without a size).
// The seed's example omits its import; this line stands for
// `import { LineChart, Line } from "recharts"` with the vendored UMD build.
const { LineChart, Line } = Recharts;

function LossChart({ data }) {
  return (
    <LineChart data={data.data.datasets[0].data} width={800} height={300}>
      {data.data.datasets.map((dataset, index) => (
        <Line
          key={index}
          dataKey={dataset.label}
          stroke={dataset.borderColor}
        />
      ))}
    </LineChart>
  );
}
